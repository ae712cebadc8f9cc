#!/usr/bin/env bash
# The edge tool on the real ARM wheels, under qemu user-mode emulation, compared with this machine.
#
#   sudo ci/pi-emulated.sh [FOLDER...]
#
# Builds (once, then reuses) Debian bookworm root file systems for arm64 and armhf, what
# Raspberry Pi OS Bookworm is built on; installs the project in each as README tells a Pi user;
# runs `cxr-edge info` and `cxr-edge classify` with both bundled models on sample_data/ and the
# FOLDERs; and compares every row with this machine's run of the same files
# (benchmarks/pi_agreement.py). Runs: `arm64` (64-bit OS, a Pi 4's Cortex-A72), `arm64-pi5`
# (a Pi 5's Cortex-A76), `armhf` (32-bit OS, `uname -m` armv7l) and `armhf-k64` (the 32-bit OS
# on a 64-bit kernel, the Pi 4/5 default: its Python sees aarch64; the `edge-armv7` extra).
#
# Exit: 0 same decisions (a flip within the tolerance of the threshold is listed, not failed);
# 1 a decision or a status differs; 2 the project failed to install or run; 77 this machine
# cannot run the check (not root, no binfmt_misc, Debian mirror or PyPI unreachable), said in
# one line starting "pi-emulated: SKIPPED".
#
# Environment: CXR_PI_ROOTFS  cache of root file systems (~/.cache/cxr-edge/pi-rootfs)
#              CXR_PI_OUT     reports, logs and the table pi-emulated.md (a new folder in /tmp)
#              CXR_PI_RUNS    which runs ("arm64 arm64-pi5 armhf armhf-k64")
#              CXR_PI_HOST_PYTHON  a Python with the edge dependencies for the x86 reference
#                             (default: a venv in the cache); cxr_edge is taken from this tree
#              CXR_PI_MIRROR  Debian mirror (http://deb.debian.org/debian)
#              CXR_PI_TOLERANCE  documented probability tolerance (0.07, docs/pi.md)
set -euo pipefail

readonly SKIP=77
repo="$(cd "$(dirname "$0")/.." && pwd)"
cache="${CXR_PI_ROOTFS:-${HOME:-/root}/.cache/cxr-edge/pi-rootfs}"
out="${CXR_PI_OUT:-$(mktemp -d /tmp/cxr-pi.XXXXXX)}"
runs="${CXR_PI_RUNS:-arm64 arm64-pi5 armhf armhf-k64}"
mirror="${CXR_PI_MIRROR:-http://deb.debian.org/debian}"
tolerance="${CXR_PI_TOLERANCE:-0.07}"
models=(pneumonia subtype)
pypi="${PIP_INDEX_URL:-https://pypi.org/simple}"
mounts=()  # mounted paths, unmounted in reverse order on exit

say() { echo "pi-emulated: $*" >&2; }
skip() { say "SKIPPED: $*"; exit "$SKIP"; }
fail() { say "FAILED: $1"; [ -z "${2:-}" ] || tail -n 25 "$2" >&2; exit 2; }  # MESSAGE [LOG]

cleanup() {
    local i
    for ((i = ${#mounts[@]} - 1; i >= 0; i--)); do umount "${mounts[i]}" 2>/dev/null || umount -l "${mounts[i]}" || true; done
    mounts=()
}
trap cleanup EXIT
trap 'exit 143' TERM INT  # so that a timeout still unmounts

arch_of() { echo "${1%%-*}"; }  # run name -> Debian architecture (armhf-k64 -> armhf)

# The emulated core and the /proc/cpuinfo it sees: a Pi's. qemu's default core ("max") has
# features no Pi has (SME), which LiteRT 2.3 then uses, and under qemu 7.2 those gave wrong
# outputs (docs/pi.md); cortex-a7 is the ARMv7 core (NEON, VFPv4) that armhf builds assume.
cpu_of() { case $1 in arm64) echo cortex-a72 ;; arm64-pi5) echo cortex-a76 ;; *) echo cortex-a7 ;; esac; }
cpuinfo_of() { case $1 in arm64-pi5) echo pi5-cpuinfo-arm64.txt ;; *) echo "pi4-cpuinfo-$(arch_of "$1").txt" ;; esac; }

require_runs() {
    local run
    for run in $runs; do
        case $run in arm64 | arm64-pi5 | armhf | armhf-k64) ;; *) fail "unknown run $run (arm64, arm64-pi5, armhf, armhf-k64)" ;; esac
    done
}

# --- what the machine must offer; anything missing is a skip, not a failure ---
require_machine() {
    [ "$(id -u)" -eq 0 ] || skip "needs root (debootstrap, chroot, mount)"
    command -v chroot >/dev/null && command -v mount >/dev/null || skip "no chroot/mount"
    local tools_ok=1
    command -v debootstrap >/dev/null || tools_ok=0
    [ -x /usr/bin/qemu-aarch64-static ] && [ -x /usr/bin/qemu-arm-static ] || tools_ok=0
    if [ "$tools_ok" -eq 0 ]; then
        command -v apt-get >/dev/null || skip "debootstrap/qemu-user-static missing and no apt-get"
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq qemu-user-static debootstrap; } \
            >"$out/apt.log" 2>&1 || skip "cannot install qemu-user-static and debootstrap (apt: $out/apt.log)"
    fi
    register_binfmt
}

# qemu's handlers with the F flag (the interpreter opened now, so a plain chroot finds it).
register_binfmt() {
    local binfmt=/proc/sys/fs/binfmt_misc handler
    [ -e "$binfmt/register" ] || mount -t binfmt_misc binfmt_misc "$binfmt" 2>/dev/null \
        || skip "binfmt_misc cannot be mounted (a container without the privilege?)"
    for handler in qemu-aarch64 qemu-arm; do
        [ -e "$binfmt/$handler" ] && continue
        [ -r "/usr/lib/binfmt.d/$handler.conf" ] || skip "no /usr/lib/binfmt.d/$handler.conf from qemu-user-static"
        printf '%s' "$(cat "/usr/lib/binfmt.d/$handler.conf")" >"$binfmt/register" 2>/dev/null \
            || skip "cannot register the $handler binfmt handler"
    done
    grep -q '^flags:.*F' "$binfmt/qemu-aarch64" && grep -q '^flags:.*F' "$binfmt/qemu-arm" \
        || skip "qemu binfmt handlers are registered without the F flag (re-register them from /usr/lib/binfmt.d)"
}

# One HTTP GET with the host's Python; false when the registry does not answer in time.
reachable() {
    python3 - "$1" <<'EOF' >/dev/null 2>&1
import sys, urllib.request
urllib.request.urlopen(sys.argv[1], timeout=30).read(1)
EOF
}

require_registries() {
    reachable "$pypi/ai-edge-litert/" || skip "PyPI ($pypi) unreachable"
    local run
    for run in $runs; do
        [ -f "$cache/$(arch_of "$run")/.cxr-complete" ] && continue
        reachable "$mirror/dists/bookworm/Release" || skip "Debian mirror $mirror unreachable"
        return
    done
}

# --- root file systems, built once and reused ---
build_rootfs() {
    local arch=$1 root="$cache/$1" include=python3,python3-venv,python3-pip,ca-certificates
    [ -f "$root/.cxr-complete" ] && return
    [ "$arch" = armhf ] && include+=,python3-numpy,python3-pil  # tflite-runtime 2.14 needs numpy<2
    unmount_under "$root"  # an interrupted debootstrap leaves its /proc and /sys mounted
    rm -rf --one-file-system "$root"
    mkdir -p "$cache"
    say "building the $arch root file system in $root (about 5 minutes)"
    debootstrap --variant=minbase --arch="$arch" --include="$include" bookworm "$root" "$mirror" \
        >"$out/debootstrap-$arch.log" 2>&1 || skip "debootstrap $arch failed (log: $out/debootstrap-$arch.log)"
    touch "$root/.cxr-complete"
}

unmount_under() {
    local target
    findmnt -rno TARGET | { grep "^$1/" || true; } | sort -r | while read -r target; do umount -l "$target"; done
    if findmnt -rno TARGET | grep -q "^$1/"; then skip "cannot unmount what is left mounted under $1"; fi
}

# /proc and /sys as on a Pi, with a Pi 4's /proc/cpuinfo (qemu would show the host's x86 one;
# LiteRT's cpuinfo then either skips XNNPACK or crashes), the host's resolver and CA bundle.
enter() {
    local run=$1 root="$cache/$(arch_of "$1")"
    mount -t proc proc "$root/proc" && mounts+=("$root/proc")
    mount -t sysfs -o ro sysfs "$root/sys" 2>/dev/null || mount --bind /sys "$root/sys"
    mounts+=("$root/sys")
    mount --bind "$repo/ci/$(cpuinfo_of "$run")" "$root/proc/cpuinfo" && mounts+=("$root/proc/cpuinfo")
    cp -L /etc/resolv.conf "$root/etc/resolv.conf" 2>/dev/null || true
    cp -L "${PIP_CERT:-/etc/ssl/certs/ca-certificates.crt}" "$root/etc/ssl/certs/cxr-host-ca.crt" 2>/dev/null || true
}

# A command in the run's chroot, with a clean environment (the host's pip settings name host paths).
in_root() {
    local run=$1; shift
    local -a env=(PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8
        PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_DEFAULT_TIMEOUT="${PIP_DEFAULT_TIMEOUT:-120}" PIP_INDEX_URL="$pypi"
        QEMU_CPU="$(cpu_of "$run")")  # read by the qemu that binfmt_misc starts for each ARM program
    [ -f "$cache/$(arch_of "$run")/etc/ssl/certs/cxr-host-ca.crt" ] && env+=(PIP_CERT=/etc/ssl/certs/cxr-host-ca.crt)
    local name
    for name in http_proxy https_proxy no_proxy HTTP_PROXY HTTPS_PROXY NO_PROXY; do
        [ -n "${!name:-}" ] && env+=("$name=${!name}")
    done
    # 32-bit userland on a 64-bit kernel: qemu-arm always says armv7l, a Pi 4/5 kernel says aarch64.
    [ "$run" = armhf-k64 ] && env+=(PYTHONPATH=/opt/uname-aarch64)
    QEMU_CPU="$(cpu_of "$run")" chroot "$cache/$(arch_of "$run")" /usr/bin/env -i "${env[@]}" "$@"
}

# This working tree (tracked and untracked, not ignored: no .venv, no .git) into DEST.
copy_tree() {
    local dest=$1
    rm -rf --one-file-system "$dest" && mkdir -p "$dest"
    if git -C "$repo" rev-parse --git-dir >/dev/null 2>&1; then
        (cd "$repo" && git ls-files -z --cached --others --exclude-standard \
            | while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done \
            | tar --null -T - -cf -) | tar -xf - -C "$dest"
    else
        tar -C "$repo" --exclude=.venv --exclude=.git -cf - . | tar -xf - -C "$dest"
    fi
}

# Inputs under one folder, so that every run names each file by the same relative path.
stage_inputs() {
    local stage="$out/work/inputs" folder name
    rm -rf "$out/work" && mkdir -p "$stage"
    cp -a "$repo/sample_data" "$stage/sample_data"
    for folder in "$@"; do
        [ -d "$folder" ] || fail "$folder is not a folder"
        name="$(basename "$(cd "$folder" && pwd)")"
        if [ -e "$stage/$name" ]; then fail "two inputs named $name"; fi
        cp -a "$folder" "$stage/$name"
    done
}

# README's install for the run: 64-bit `.[edge]`; 32-bit a venv over Debian's numpy and Pillow,
# `.[edge]` under an armv7l kernel, `.[edge-armv7]` under an aarch64 one.
install_project() {
    local run=$1 root="$cache/$(arch_of "$1")" venv=(python3 -m venv) extra=edge
    case $run in
        armhf) venv+=(--system-site-packages) ;;
        armhf-k64) venv+=(--system-site-packages); extra=edge-armv7
            mkdir -p "$root/opt/uname-aarch64" && cp "$repo/ci/uname_aarch64.py" "$root/opt/uname-aarch64/sitecustomize.py" ;;
    esac
    copy_tree "$root/opt/cxr-edge"
    in_root "$run" sh -c "cd /opt/cxr-edge && rm -rf /opt/venv-$run && ${venv[*]} /opt/venv-$run && /opt/venv-$run/bin/pip install '.[$extra]'" \
        >"$out/install-$run.log" 2>&1 || fail "$run: pip install '.[$extra]' failed" "$out/install-$run.log"
}

# `cxr-edge info` and one classify per model in the folder holding inputs/; wall seconds beside each report.
# --screen-all: the generated films are drawings the gate rejects, and a rejected row has no
# probability to compare; screened anyway, every row's probabilities are compared, and each
# row the gate would reject says so in its note on both sides.
classify_all() {
    local run=$1 work=$2; shift 2  # the rest: the command that runs cxr-edge there
    local model start status
    (cd "$work" && "$@" info) >"$out/reports/$run-info.txt" 2>&1 || fail "$run: cxr-edge info failed" "$out/reports/$run-info.txt"
    for model in "${models[@]}"; do
        start=$(date +%s.%N)
        status=0
        (cd "$work" && "$@" classify inputs --model "$model" --out "reports/$model.csv" --overwrite --quiet --screen-all) \
            2>"$out/reports/$run-$model.log" || status=$?
        [ "$status" -le 1 ] || fail "$run: cxr-edge classify --model $model exited $status" "$out/reports/$run-$model.log"
        awk "BEGIN { print $(date +%s.%N) - $start }" >"$out/reports/$run-$model.seconds"
        cp "$work/reports/$model.csv" "$out/reports/$run-$model.csv"
    done
}

host_python() {
    [ -n "${CXR_PI_HOST_PYTHON:-}" ] && { echo "$CXR_PI_HOST_PYTHON"; return; }
    local venv="$cache/x86_64-venv" deps
    deps="$(sha256sum "$repo/pyproject.toml" | cut -d' ' -f1)"  # rebuilt when the dependencies may have changed
    if [ "$(cat "$venv/.pyproject-sha256" 2>/dev/null)" != "$deps" ]; then
        rm -rf "$venv"
        { python3 -m venv "$venv" && "$venv/bin/pip" install --quiet "$repo[edge]"; } >"$out/install-x86_64.log" 2>&1 \
            || fail "x86_64: pip install '.[edge]' failed" "$out/install-x86_64.log"
        echo "$deps" >"$venv/.pyproject-sha256"
    fi
    echo "$venv/bin/python"
}

run_host() {
    local python
    python="$(host_python)"
    mkdir -p "$out/work/reports"
    classify_all x86_64 "$out/work" env PYTHONPATH="$repo" "$python" -m cxr_edge
}

run_emulated() {
    local run=$1 root="$cache/$(arch_of "$1")" begin=$SECONDS
    build_rootfs "$(arch_of "$run")"
    say "$run: installing and classifying"
    enter "$run"
    install_project "$run"
    rm -rf --one-file-system "$root/work" && cp -a "$out/work" "$root/work"
    classify_all "$run" "$root/work" in_root "$run" sh -c "cd /work && exec /opt/venv-$run/bin/cxr-edge \"\$@\"" cxr-edge
    cleanup
    say "$run: done in $((SECONDS - begin)) s"
}

main() {
    mkdir -p "$out/reports" "$cache"
    require_runs
    require_machine
    exec 9>"$cache/.lock"  # one run at a time per cache: the chroots' mounts are shared
    flock -w 1800 9 || skip "another run has held $cache/.lock for 30 minutes"
    require_registries
    stage_inputs "$@"
    run_host
    local run
    for run in $runs; do run_emulated "$run"; done
    # shellcheck disable=SC2086
    python3 "$repo/benchmarks/pi_agreement.py" --reports "$out/reports" --reference x86_64 --runs $runs \
        --models "${models[@]}" --tolerance "$tolerance" --markdown "$out/pi-emulated.md"
}

main "$@"
