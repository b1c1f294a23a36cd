# Sourced by gpu_bench.sh and gpu_cell_suite.sh: a venv on the GPU machine from the carried wheel groups.
#
# make_gpu_venv VENV WHEELS LOG
#   `python3` there is itself a venv (/opt/...), so --system-site-packages would reach the OS Python, not the
#   preinstalled torch: a .pth in our venv appends that venv's site-packages instead (measured on the H100).
#   Wheels over the group limit travel in parts (NAME.whl.part-00, -01, ... across groups): they are joined,
#   then every wheel is installed without deps (gpu_wheelhouse.sh resolved the closure). Returns pip's status.
make_gpu_venv() {
    local venv=$1 wheels=$2 log=$3 joined whl
    python3 -m venv "$venv" || return 1
    python3 -c "import sysconfig; print(sysconfig.get_paths()['purelib'])" \
        > "$("$venv/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")/zz-preinstalled-stack.pth"
    joined=$(mktemp -d /tmp/wxm-joined-wheels.XXXX)
    for whl in $(ls "$wheels"/g*/*.whl.part-* 2>/dev/null | xargs -rn1 basename | sed 's/\.part-[0-9]*$//' | sort -u); do
        cat $(ls "$wheels"/g*/"$whl".part-* | awk -F/ '{print $NF" "$0}' | sort | cut -d" " -f2) > "$joined/$whl"
    done
    "$venv/bin/pip" install -q --no-index --no-deps $(ls "$wheels"/g*/*.whl "$joined"/*.whl 2>/dev/null) > "$log" 2>&1
}
