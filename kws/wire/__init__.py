"""Wire formats shared by the REST and MQTT paths: SenML (RFC 8428), audio packs and features packs."""
