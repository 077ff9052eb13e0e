#!/bin/sh
# /usr/local/sbin/cloudpod-create.sh — the spec's SSH+sudo contract, kept for ops who use it:
#   sudo /usr/local/sbin/cloudpod-create.sh 9101 migra-client-01 91
# It runs cloudpod-create (the cloudpod binary installed under that name), which takes only the
# pod's own fields from the command line and refuses anything else; the connection, token, TLS,
# audit, IPAM and requester settings come from the root-owned /etc/cloudpods/cloudpods.env and
# from sudo. Keep SETENV and env_keep for PVE_*/CLOUDPODS_* out of its sudoers rule.
exec /usr/local/sbin/cloudpod-create "$@"
