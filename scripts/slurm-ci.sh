#!/usr/bin/env bash
# slurm-ci.sh — a one-node Slurm cluster for rftx's tests and CI: no systemd, no cgroups,
# everything under one directory, daemons stopped by the pids in their pid files.
# Adapted from ../shared/recipes/slurm-one-node.md (Debian's Slurm 22.05; its errors and fixes).
# usage: slurm-ci.sh install|start|stop|status      (run as root; Debian/Ubuntu packages)
# env:   SLURM_CI_DIR (default /tmp/slurm), SLURM_CI_PORT (slurmctld port, default 6817; slurmd uses +1)
# after start:  source "$SLURM_CI_DIR/env"   (sets SLURM_CONF for sbatch/squeue/scontrol)
set -euo pipefail
S=${SLURM_CI_DIR:-/tmp/slurm}
PORT=${SLURM_CI_PORT:-6817}

install_pkgs() {
  command -v slurmctld >/dev/null && command -v munged >/dev/null && command -v sbatch >/dev/null && return
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # postinst scripts try invoke-rc.d and are refused without an init system: harmless
  apt-get install -y -qq --no-install-recommends slurmctld slurmd slurm-client munge >/dev/null
}

pidof_file() { [ -s "$1" ] && cat "$1" || true; }

stop_pids() {   # SIGTERM the daemons named by pid file, wait up to 10 s, then SIGKILL
  local f p pids=()
  for f in "$@"; do p=$(pidof_file "$S/run/$f.pid"); [ -n "$p" ] && kill "$p" 2>/dev/null && pids+=("$p"); rm -f "$S/run/$f.pid"; done
  for _ in $(seq 1 50); do
    local alive=0; for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
    [ $alive = 0 ] && return 0; sleep 0.2
  done
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
}

start() {
  install_pkgs
  [ -e "$S/run/slurmctld.pid" ] && { echo "already started? run: $0 stop" >&2; exit 1; }
  rm -rf "$S"; mkdir -p "$S"/{etc,state,spool,log,run,munge}
  chmod 700 "$S/munge"; chmod 755 "$S/run"          # munged: socket dir must be o+x, key dir private
  head -c 1024 /dev/urandom > "$S/munge/munge.key"; chmod 400 "$S/munge/munge.key"
  nice munged --key-file="$S/munge/munge.key" --socket="$S/run/munge.socket" \
    --pid-file="$S/run/munged.pid" --log-file="$S/log/munged.log" --seed-file="$S/munge/munged.seed"
  local cpus mem
  cpus=$(nproc)
  mem=$(( $(awk '/MemTotal/{print $2}' /proc/meminfo) / 2048 ))   # half of RAM in MiB; not enforced
  cat > "$S/etc/slurm.conf" <<CONF
ClusterName=ci
SlurmctldHost=localhost
SlurmctldPort=$PORT
SlurmdPort=$((PORT + 1))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# cred_expire also = how long a requeued job waits before it may start again (default 120 s)
AuthInfo=socket=$S/run/munge.socket,cred_expire=10
StateSaveLocation=$S/state
SlurmdSpoolDir=$S/spool
SlurmctldPidFile=$S/run/slurmctld.pid
SlurmdPidFile=$S/run/slurmd.pid
SlurmctldLogFile=$S/log/slurmctld.log
SlurmdLogFile=$S/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SwitchType=switch/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
# CI-only: schedule every 2 s so requeued/dependent jobs start fast (defaults 60 s / 30 s)
SchedulerParameters=kill_invalid_depend,sched_interval=2,bf_interval=2
MinJobAge=600
MailProg=/bin/true
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
  echo "export SLURM_CONF=$S/etc/slurm.conf" > "$S/env"
  export SLURM_CONF="$S/etc/slurm.conf"
  nice slurmctld -f "$SLURM_CONF"
  nice slurmd -f "$SLURM_CONF" -N localhost
  for _ in $(seq 1 60); do
    [ "$(sinfo -h -n localhost -o %T 2>/dev/null)" = idle ] && { echo "slurm up: source $S/env"; return 0; }
    sleep 0.5
  done
  echo "slurm did not come up; logs:" >&2; tail -n 20 "$S"/log/*.log >&2; exit 1
}

stop() {
  local f p
  if [ -s "$S/run/slurmctld.pid" ]; then   # cancel leftover jobs so no slurmstepd outlives the daemons
    export SLURM_CONF="$S/etc/slurm.conf"
    squeue -h -o %A 2>/dev/null | xargs -r scancel 2>/dev/null || true
    for _ in $(seq 1 50); do [ -z "$(squeue -h 2>/dev/null)" ] && break; sleep 0.2; done
  fi
  stop_pids slurmd slurmctld   # each takes ~2 s to exit; stop both at once, munge last
  stop_pids munged
  echo "slurm stopped"
}

status() {
  local f p
  for f in munged slurmctld slurmd; do
    p=$(pidof_file "$S/run/$f.pid"); printf '%-10s %s\n' "$f" "${p:-none}$( [ -n "$p" ] && kill -0 "$p" 2>/dev/null && echo ' (alive)')"
  done
  SLURM_CONF="$S/etc/slurm.conf" sinfo 2>&1 || true
}

case "${1:-}" in install) install_pkgs ;; start) start ;; stop) stop ;; status) status ;; *) echo "usage: $0 install|start|stop|status" >&2; exit 2 ;; esac
