#!/bin/sh
# Builds the password file from the environment at every start: no secret in the repository.
set -eu
rm -f /mosquitto/data/passwords
mosquitto_passwd -b -c /mosquitto/data/passwords cellmon "$MQTT_CELLMON_PASSWORD"
mosquitto_passwd -b /mosquitto/data/passwords controller "$MQTT_CONTROLLER_PASSWORD"
chmod 0700 /mosquitto/data/passwords
exec mosquitto -c /cellmon/mosquitto.conf
