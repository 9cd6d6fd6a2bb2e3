#!/usr/bin/env bash
# A private two-node Slurm cluster on this one machine, for the multi-node Slurm test: its own slurmctld
# and two slurmd (NodeNames n1 and n2, each on its own port, both on 127.0.0.1), configured in DIR and
# used through SLURM_CONF=DIR/slurm.conf. It leaves /etc/slurm and the single-node Slurm of
# scripts/slurm_single_node.sh alone (other ports, other state). Needs root, Debian's slurmctld/slurmd
# (built with multiple-slurmd support: `slurmd -N NAME` picks the node, %n names its spool and pid file)
# and munge.
#   sudo bash scripts/slurm_two_nodes.sh start DIR     (then: SLURM_CONF=DIR/slurm.conf sinfo)
#   sudo bash scripts/slurm_two_nodes.sh stop DIR
# Exit status 0: up (or stopped); 3: it cannot be set up here.
set -euo pipefail

action=${1:?start|stop}
dir=$(realpath -m "${2:?DIR}")

stop() {
  for pidfile in "$dir"/run/*.pid; do
    [ -f "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null || true
  done
}
if [ "$action" = stop ]; then stop; exit 0; fi

if [ "$(id -u)" != 0 ]; then
  echo "slurm (two nodes): needs root to start slurmd" >&2; exit 3
fi
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! pgrep -x munged >/dev/null; then
  echo "slurm (two nodes): needs slurmctld, slurmd and a running munged (run scripts/slurm_single_node.sh first)" >&2
  exit 3
fi

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
ctld_port=$(free_port); port1=$(free_port); port2=$(free_port)
mkdir -p "$dir"/{state,spool/n1,spool/n2,log,run}
cat >"$dir/slurm.conf" <<CONF
ClusterName=c2c-two
SlurmctldHost=$(hostname -s)(127.0.0.1)
SlurmctldPort=${ctld_port}
SlurmUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
ReturnToService=2
StateSaveLocation=${dir}/state
SlurmdSpoolDir=${dir}/spool/%n
SlurmctldPidFile=${dir}/run/slurmctld.pid
SlurmdPidFile=${dir}/run/slurmd-%n.pid
SlurmctldLogFile=${dir}/log/slurmctld.log
SlurmdLogFile=${dir}/log/slurmd-%n.log
MpiDefault=none
JobRequeue=1
KillWait=10
MinJobAge=300
NodeName=n1 NodeHostname=$(hostname -s) NodeAddr=127.0.0.1 Port=${port1} CPUs=1 RealMemory=2000 State=UNKNOWN
NodeName=n2 NodeHostname=$(hostname -s) NodeAddr=127.0.0.1 Port=${port2} CPUs=1 RealMemory=2000 State=UNKNOWN
PartitionName=two Nodes=n1,n2 Default=YES MaxTime=INFINITE State=UP
CONF

export SLURM_CONF="$dir/slurm.conf"
slurmctld -f "$SLURM_CONF"
for node in n1 n2; do slurmd -f "$SLURM_CONF" -N "$node"; done
for _ in $(seq 30); do
  if [ "$(sinfo -h -N -o %T 2>/dev/null | grep -cE 'idle|mix|alloc')" = 2 ]; then
    echo "slurm (two nodes): up, SLURM_CONF=$SLURM_CONF"; exit 0
  fi
  scontrol update nodename=n1,n2 state=resume >/dev/null 2>&1 || true
  sleep 1
done
echo "slurm (two nodes): daemons started but the nodes are not idle:" >&2
sinfo -N >&2 || true
tail -n 5 "$dir"/log/*.log >&2 || true
stop
exit 3
