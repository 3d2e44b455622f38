#!/bin/sh
{{source "common"~}}
# {{var "/cluster/name"}}: boot script of {{var "/local/role" "worker"}} {{var "/local/ip"}}
set -e
{{#if (eq (var "/local/role" "worker") "manager")}}
{{include "volume.sh"~}}
{{/if}}
{{#if (var "/local/swarm/init" false)}}
docker swarm init --advertise-addr {{var "/local/ip"}}
{{else}}
docker swarm join --token {{var "/cluster/swarm/join/token"}} {{var "/cluster/swarm/join/ip"}}:2377
{{/if}}
