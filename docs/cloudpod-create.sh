#!/bin/sh
# /usr/local/sbin/cloudpod-create.sh — the spec's SSH+sudo contract, kept for ops who use it:
#   sudo /usr/local/sbin/cloudpod-create.sh 9101 migra-client-01 91
# Settings (PVE_URL, token file, fingerprint) come from /etc/cloudpods/cloudpods.env.
exec /usr/local/bin/cloudpod create "$@"
