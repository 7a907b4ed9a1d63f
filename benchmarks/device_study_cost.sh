# The study's cost part on a GPU (quick preset and the paper models on CIFAR-shaped synthetic data),
# after the engine's CUDA tests. Run from the repository root on a CUDA machine; results under $OUT.
set -o pipefail
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD/src:$PWD/.whl/site GNSEL_DATA_ROOT=/tmp/gdata
OUT=${OUT:-device-out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name --format=csv,noheader
python3 -c "import torch; print('torch', torch.__version__)"
python3 -m pytest -q -p no:cacheprovider tests/test_gradnorm_exact.py -k "cuda or chunk" 2>&1 | tail -3
python3 -m gnsel.cli study --part cost --device cuda --out /tmp/quick 2>&1 | tail -3
python3 -m gnsel.cli study --preset benchmarks/study_paper_cost.yaml --part cost --device cuda --out /tmp/paper 2>&1 | tail -3
for d in quick paper; do
    cp /tmp/$d/tables/cost_summary.csv "$OUT/${d}_cost_summary.csv"
    cp /tmp/$d/figures/cost_ratios.png "$OUT/${d}_cost_ratios.png"
done
