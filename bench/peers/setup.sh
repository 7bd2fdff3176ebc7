#!/usr/bin/env bash
# Make one virtual environment per peer under bench/peers/venvs/ (never in mloop's own venv).
# Usage: bench/peers/setup.sh [peer ...]     (default: every peer)
# Versions are the ones that install on the benchmark machines (see ../shared/PEERS.md).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venvs="$here/venvs"
python="${PYTHON:-python3}"
mkdir -p "$venvs"

make_venv() {  # make_venv NAME PIP-ARGS...
    local name=$1; shift
    if [ -x "$venvs/$name/bin/python" ] && [ -f "$venvs/$name/.done" ]; then
        echo "[peers] $name: ready"; return
    fi
    echo "[peers] $name: installing $*"
    rm -rf "${venvs:?}/$name"
    "$python" -m venv "$venvs/$name"
    "$venvs/$name/bin/pip" install -q --disable-pip-version-check "$@"
    touch "$venvs/$name/.done"
}

peers=("$@")
[ ${#peers[@]} -eq 0 ] && peers=(mlflow great_expectations pandera)
for peer in "${peers[@]}"; do
    case "$peer" in
        # 3.18.0 needs an mlflow-skinny==3.18.0 the registry lacks
        mlflow) make_venv mlflow "mlflow<3.18" "scikit-learn" "psutil" ;;
        great_expectations) make_venv great_expectations "great_expectations==1.24.*" "pyarrow" "psutil" ;;
        pandera) make_venv pandera "pandera[polars]==0.35.*" "pandas" "polars" "pyarrow" "psutil" ;;
        # the duckdb extra brings its DuckDB offline store (ibis); redis for its Redis online store
        feast) make_venv feast "feast[redis,duckdb]==0.67.*" "polars" "psutil" ;;
        # bench/serving.py: the same HistGradientBoosting model served by `bentoml serve`
        bentoml) make_venv bentoml "bentoml==1.4.*" "scikit-learn" "pandas" "pyarrow" "psutil" ;;
        # bench/drift.py: DataDriftPreset; 0.7.23 fails to import on pandas 3 and does not cap it
        evidently) make_venv evidently "evidently==0.7.23" "pandas<3" "pyarrow" "psutil" ;;
        *) echo "[peers] unknown peer $peer" >&2; exit 2 ;;
    esac
done
