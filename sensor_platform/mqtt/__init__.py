"""MQTT source: drain a persistent session, land what it held, then acknowledge (paho-mqtt 2.x)."""
