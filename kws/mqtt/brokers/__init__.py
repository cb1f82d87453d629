"""MQTT brokers the project can start itself: Debian's Mosquitto, or an embedded Python broker."""
