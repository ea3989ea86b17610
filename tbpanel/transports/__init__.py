"""Device transports besides HTTP (MQTT); each feeds the store's durable write path."""
