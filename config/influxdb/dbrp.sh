#!/bin/sh
# InfluxQL (Grafana's boards, cellmon report) reads the v2 bucket through a DBRP mapping:
# database "cellmon", retention policy "autogen".
set -eu
bucket_id=$(influx bucket list --org "$DOCKER_INFLUXDB_INIT_ORG" --name "$DOCKER_INFLUXDB_INIT_BUCKET" --hide-headers | cut -f 1)
influx v1 dbrp create --org "$DOCKER_INFLUXDB_INIT_ORG" --bucket-id "$bucket_id" \
  --db cellmon --rp autogen --default
