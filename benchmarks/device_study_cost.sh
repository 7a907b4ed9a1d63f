set -o pipefail
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD/src:$PWD/.whl/site GNSEL_DATA_ROOT=/tmp/gdata
nvidia-smi --query-gpu=name --format=csv,noheader
python3 -c "import torch; print('torch', torch.__version__)"
python3 -m gnsel.cli study --part cost --device cuda --out /tmp/quick 2>&1 | tail -8
python3 -m gnsel.cli study --preset benchmarks/study_paper_cost.yaml --part cost --device cuda --out /tmp/paper 2>&1 | tail -8
for d in quick paper; do cp /tmp/$d/tables/cost_summary.csv $OUT/${d}_cost_summary.csv; cp /tmp/$d/figures/cost_ratios.png $OUT/${d}_cost_ratios.png; cp /tmp/$d/report.md $OUT/${d}_report.md; done
