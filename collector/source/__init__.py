"""The source stage: MQTT in, payloads decoded and validated, rejections kept."""
