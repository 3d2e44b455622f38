# shellcheck shell=bash
# Real test engines for infrakit-rs (DESIGN.md §5): Docker engine, a registry-free
# busybox image, moto_server for EC2, and etcd (the tests start their own clusters). Sourced by scripts/test; every step is
# idempotent and cheap when its engine is already installed and answering.
#
# Progress lines go to stderr; ik_print_env writes `export` lines to stdout.

# dockerd, ip and iptables live in sbin, which a minimal PATH may lack.
for _d in /usr/local/sbin /usr/sbin /sbin; do
    [[ :$PATH: == *":$_d:"* ]] || PATH=$PATH:$_d
done
unset _d

IK_DOCKER_SOCK=${IK_DOCKER_SOCK:-/var/run/docker.sock}
IK_DOCKERD_LOG=${IK_DOCKERD_LOG:-/var/log/infrakit-dockerd.log}
# Defaults are enough on this machine kind (overlay2, cgroupfs on cgroup v1,
# iptables-nft): extra daemon flags can be given here if another sandbox needs them.
IK_DOCKERD_FLAGS=${IK_DOCKERD_FLAGS:-}
IK_TEST_IMAGE=${IK_TEST_IMAGE:-infrakit-test/busybox:latest}
IK_MOTO_HOST=127.0.0.1
IK_MOTO_PORT=${IK_MOTO_PORT:-5000}
IK_MOTO_LOG=${IK_MOTO_LOG:-/var/log/infrakit-moto.log}
IK_INSTALL_LOG=${IK_INSTALL_LOG:-/var/log/infrakit-install.log}
IK_WAIT_SECS=${IK_WAIT_SECS:-60}
# Debian package -> the command that shows it is there (busybox-static: the
# package itself, since a dynamic busybox can't run in an empty rootfs).
# chromium: the status page is tested in a real browser (headless).
# etcd-server: the etcd tests start their own clusters from it; protobuf-compiler: protoc,
# which the etcd client crate's build needs.
declare -gA IK_APT_PACKAGES=([docker.io]=dockerd [iproute2]=ip [iptables]=iptables [busybox-static]="" [curl]=curl [chromium]=chromium [etcd-server]=etcd [protobuf-compiler]=protoc [openssl]=openssl)

ik_log() { printf '== %s\n' "$*" >&2; }
ik_die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# Run an install command with its output in IK_INSTALL_LOG, shown only on failure.
ik_quiet() {
    mkdir -p "$(dirname "$IK_INSTALL_LOG")"
    printf '\n$ %s\n' "$*" >>"$IK_INSTALL_LOG"
    DEBIAN_FRONTEND=noninteractive PIP_ROOT_USER_ACTION=ignore "$@" >>"$IK_INSTALL_LOG" 2>&1 || {
        tail -n 30 "$IK_INSTALL_LOG" >&2
        ik_die "failed: $* (log: $IK_INSTALL_LOG)"
    }
}

# ik_await NAME PID LOG CHECK...: wait until CHECK succeeds, at most IK_WAIT_SECS
# seconds; fail early if the process PID (when given) has exited.
ik_await() {
    local name=$1 pid=$2 log=$3 why="" deadline=$((SECONDS + IK_WAIT_SECS))
    shift 3
    until "$@" >/dev/null 2>&1; do
        if [[ -n $pid ]] && ! ik_pid_alive "$pid"; then
            why="$name exited"
        elif ((SECONDS >= deadline)); then
            why="$name did not answer within ${IK_WAIT_SECS}s"
        fi
        if [[ -n $why ]]; then
            tail -n 20 "$log" >&2 || true
            ik_die "$why (log: $log)"
        fi
        sleep 0.5
    done
}

# Is process $1 alive? A zombie is not: PID 1 in this sandbox reaps orphans late,
# and a killed dockerd can linger as a zombie that `kill -0` still finds.
ik_pid_alive() {
    [[ -n ${1:-} && -r /proc/$1/status ]] && ! grep -q '^State:.*Z' "/proc/$1/status"
}

# Start a long-lived daemon detached from this script: own session, no stdin,
# no inherited lock fd, output appended to a log file.
ik_spawn() {
    local log=$1; shift
    mkdir -p "$(dirname "$log")"
    (cd / && exec setsid "$@" </dev/null >>"$log" 2>&1 9>&-) &
}

# --- Debian packages ---------------------------------------------------------

ik_install_packages() {
    local missing=() pkg
    for pkg in "${!IK_APT_PACKAGES[@]}"; do
        if [[ -n ${IK_APT_PACKAGES[$pkg]} ]]; then
            command -v "${IK_APT_PACKAGES[$pkg]}" >/dev/null && continue
        else
            dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'ok installed' && continue
        fi
        missing+=("$pkg")
    done
    ((${#missing[@]})) || return 0
    ik_log "installing Debian packages: ${missing[*]}"
    ik_quiet apt-get update -qq
    ik_quiet apt-get install -y -qq "${missing[@]}"
}

# --- Docker engine -----------------------------------------------------------

ik_docker() { docker -H "unix://$IK_DOCKER_SOCK" "$@"; }
ik_docker_answers() { ik_docker version >/dev/null 2>&1; }

# Is the dockerd named by the default pidfile alive (not a stale pid, not a zombie)?
ik_dockerd_alive() {
    local pid
    pid=$(cat /var/run/docker.pid 2>/dev/null) || return 1
    [[ $(cat "/proc/$pid/comm" 2>/dev/null) == dockerd ]] && ik_pid_alive "$pid"
}

ik_start_dockerd() {
    if ik_docker_answers; then return 0; fi
    # A dockerd that is still starting up owns the pidfile: wait for it rather than
    # race it. Otherwise start one, after removing stale pidfiles of dockerd and of
    # its containerd: both are trusted while their pid exists, even as a zombie.
    local pid="" ctr_pidfile=/var/run/docker/containerd/containerd.pid
    if ! ik_dockerd_alive; then
        ik_log "starting dockerd (log: $IK_DOCKERD_LOG)"
        rm -f /var/run/docker.pid
        ik_pid_alive "$(cat "$ctr_pidfile" 2>/dev/null)" || rm -f "$ctr_pidfile"
        echo "--- started by scripts/test at $(date -u +%FT%TZ)" >>"$IK_DOCKERD_LOG"
        # shellcheck disable=SC2086  # IK_DOCKERD_FLAGS is a word list on purpose
        ik_spawn "$IK_DOCKERD_LOG" dockerd -H "unix://$IK_DOCKER_SOCK" $IK_DOCKERD_FLAGS
        pid=$!
    fi
    ik_log "waiting for $IK_DOCKER_SOCK"
    ik_await dockerd "$pid" "$IK_DOCKERD_LOG" ik_docker_answers
    IK_CHANGED=1
}

# An image without a registry: a busybox-static rootfs, imported.
ik_build_test_image() {
    if ik_docker image inspect "$IK_TEST_IMAGE" >/dev/null 2>&1; then return 0; fi
    ik_log "building $IK_TEST_IMAGE from busybox-static"
    local rootfs applet
    rootfs=$(mktemp -d)
    mkdir -p "$rootfs"/{bin,tmp,data}
    cp /bin/busybox "$rootfs/bin/busybox"
    for applet in $(/bin/busybox --list); do
        [[ $applet == busybox ]] || ln -s busybox "$rootfs/bin/$applet"
    done
    tar -C "$rootfs" -c . | ik_docker import -c 'ENV PATH=/bin' -c 'CMD ["sh"]' - "$IK_TEST_IMAGE" >/dev/null
    rm -rf "$rootfs"
    IK_CHANGED=1
}

# Only after something changed: prove a container really runs here.
ik_smoke_test_docker() {
    [[ ${IK_CHANGED:-0} == 1 ]] || return 0
    ik_log "checking that a container runs"
    local out
    out=$(ik_docker run --rm "$IK_TEST_IMAGE" sh -c 'echo ok' 2>&1) || true
    [[ $out == ok ]] || ik_die "docker run of $IK_TEST_IMAGE failed: $out (log: $IK_DOCKERD_LOG)"
}

# --- moto_server (EC2) -------------------------------------------------------

ik_moto_url() { printf 'http://%s:%s' "$IK_MOTO_HOST" "$IK_MOTO_PORT"; }
# A cheap page (moto serves instance metadata too); /moto-api/data.json grows with the state.
ik_moto_answers() { curl -fs -o /dev/null --max-time 5 "$(ik_moto_url)/latest/meta-data/instance-id"; }

ik_install_moto() {
    if command -v moto_server >/dev/null; then return 0; fi
    ik_log "installing moto[server] from PyPI"
    local py pip_args=(-q --disable-pip-version-check)
    py=$(command -v python3) || ik_die "python3 not found"
    "$py" -m pip --version >/dev/null 2>&1 || ik_quiet apt-get install -y -qq python3-pip
    # Debian's own python refuses pip installs (PEP 668); pyenv's python does not.
    if "$py" -c 'import os,sys,sysconfig; sys.exit(not os.path.exists(os.path.join(sysconfig.get_path("stdlib"),"EXTERNALLY-MANAGED")))'; then
        pip_args+=(--break-system-packages)
    fi
    ik_quiet "$py" -m pip install "${pip_args[@]}" 'moto[server]'
    command -v pyenv >/dev/null && pyenv rehash
    hash -r
    if ! command -v moto_server >/dev/null; then
        PATH="$("$py" -c 'import sysconfig; print(sysconfig.get_path("scripts"))'):$PATH"
        command -v moto_server >/dev/null || ik_die "moto_server not on PATH after pip install"
    fi
}

# The tests need moto to refuse unknown AMIs, as EC2 does (MOTO_ENABLE_AMI_VALIDATION).
ik_moto_pid() { pgrep -f "moto_server -H $IK_MOTO_HOST -p $IK_MOTO_PORT" | head -n 1; }
ik_moto_validates() {
    local pid; pid=$(ik_moto_pid)
    [ -n "$pid" ] && tr '\0' '\n' <"/proc/$pid/environ" 2>/dev/null | grep -qx 'MOTO_ENABLE_AMI_VALIDATION=true'
}

ik_start_moto() {
    if ik_moto_answers; then
        if ik_moto_validates; then
            # A clean account for every run (tests also use their own namespaces).
            curl -fs -o /dev/null -X POST "$(ik_moto_url)/moto-api/reset" || true
            return 0
        fi
        ik_log "restarting moto_server with MOTO_ENABLE_AMI_VALIDATION=true"
        kill "$(ik_moto_pid)" 2>/dev/null || ik_die "a server answers on $(ik_moto_url) that is not our moto_server"
        for _ in $(seq 50); do ik_moto_answers || break; sleep 0.1; done
    fi
    ik_log "starting moto_server on $(ik_moto_url) (log: $IK_MOTO_LOG)"
    echo "--- started by scripts/test at $(date -u +%FT%TZ)" >>"$IK_MOTO_LOG"
    MOTO_ENABLE_AMI_VALIDATION=true ik_spawn "$IK_MOTO_LOG" moto_server -H "$IK_MOTO_HOST" -p "$IK_MOTO_PORT"
    ik_await moto_server $! "$IK_MOTO_LOG" ik_moto_answers
}

# --- all of it ---------------------------------------------------------------

ik_prepare() {
    [[ $(id -u) == 0 ]] || ik_die "the test engines need root (apt-get, dockerd, netns)"
    # One preparer at a time, so parallel runs don't start two daemons.
    exec 9>/var/lock/infrakit-test.lock
    flock 9
    IK_CHANGED=0
    ik_install_packages
    ik_start_dockerd
    ik_build_test_image
    ik_smoke_test_docker
    ik_install_moto
    ik_start_moto
    exec 9>&-

    export INFRAKIT_DOCKER_HOST="unix://$IK_DOCKER_SOCK"
    export INFRAKIT_TEST_IMAGE="$IK_TEST_IMAGE"
    export INFRAKIT_MOTO_ENDPOINT
    INFRAKIT_MOTO_ENDPOINT=$(ik_moto_url)
    export INFRAKIT_CHROMIUM
    INFRAKIT_CHROMIUM=$(command -v chromium)
}

ik_print_env() {
    local v
    for v in INFRAKIT_DOCKER_HOST INFRAKIT_TEST_IMAGE INFRAKIT_MOTO_ENDPOINT INFRAKIT_CHROMIUM; do
        printf 'export %s=%q\n' "$v" "${!v}"
    done
}
