"""Cooperative inference over MQTT: topics and payloads, the connection, inference clients,
the ensemble tracker and its combine policies, the cooperative run, brokers and a spawned fleet."""
