#!/usr/bin/env bash
# The GPU-machine measurements behind benchmarks/results/*-h100.* and *-h200.*, in the order they ran.
# Usage (repo root, on the GPU machine, wheels from `EXTRA="isal xxhash" bash ../shared/tools/gpu-wheels.sh` in
# .whl/: the GPU image lacks isal, drrkit's .nii.gz decoder, and xxhash, its CT checksum):
# (on 2026-12-04 with zarr 3.1.6 and numcodecs 0.16.6 swapped in for the script's newest, to match CI's Python 3.11)
#   bash benchmarks/gpu_runs.sh render|corpus|train|final|corpus-procs|corpus-long|probes  RESULTS_DIR
# Each step has its own time limit and log; a failing step is recorded and the next one runs.
# With 15 device-minutes a session (start-up included), one of corpus-procs / probes fits per
# session: corpus-procs first (issue 3 is P2). corpus-long (~300 s) and probes (~560 s) do not fit
# one session together with a machine start and the wheel installs: one per session, corpus-long first.
set -u
part=$1; R=$2; mkdir -p "$R"
W=${DRRKIT_GPU_WORK:-$PWD/.gpu-work}; mkdir -p "$W"
export PYTHONUNBUFFERED=1
step() {  # step NAME SECONDS CMD...
  local name=$1 limit=$2; shift 2
  local t0=$(date +%s)
  timeout "$limit" "$@" > "$R/$name.log" 2>&1; local rc=$?
  echo "$name rc=$rc $(( $(date +%s) - t0 ))s" | tee -a "$R/steps.txt"
}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$R/gpu.txt" 2>&1
# results are named after the GPU (h100, h200, ...): calls 2-4 of the 2026-11-23 session ran on an H200
T=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1 | grep -oiE 'h[0-9]+|a[0-9]+' | tr A-Z a-z)
T=${T:-gpu}
case $part in
render)  # first call: GPU tests, all render cases (timed out at 330 s, see results/render-h100-call1.jsonl)
  step pytest-gpu 150 python3 -m pytest -q -m gpu -p no:cacheprovider tests/render tests/train/test_loop.py
  step bench-render 330 python3 benchmarks/bench_render.py --device cuda --sizes 256 512 \
      --volumes v300 example --views 1024 --peer-views 31 --kernels auto box --out "$R/render-$T.json"
  step bench-reconstruct 120 python3 benchmarks/bench_reconstruct.py --device cuda --size 256 --views 360 \
      --iter-size 128 --out "$R/reconstruct-$T.json"
  ;;
corpus)  # second call: 256² render cases (pinned host copies, on-GPU rates), corpus, phantom store
  step bench-render 230 python3 benchmarks/bench_render.py --device cuda --sizes 256 --volumes v300 example \
      --views 1024 --peer-views 31 --out "$R/render-$T.json"
  step bench-corpus 220 python3 benchmarks/bench_corpus.py --n-cts 32 --depth 300 --height 256 --device cuda \
      --workers 1 --peer-cts 4 --workdir "$W/corpus" --out "$R/corpus-$T.json"
  rm -rf "$W/corpus"
  step phantoms 40 python3 -m drrkit phantom --n 128 --shape 128 --out "$W/phantoms"
  step render-phantoms 60 python3 -m drrkit render --ct-dir "$W/phantoms" --poses xwin --height 224 \
      --out "$W/phantoms.zarr"
  ;;
train)  # third call, on the same (warm) machine
  step train-wm 150 python3 -m drrkit train --config train-xwin-small-phantoms --store "$W/phantoms.zarr" \
      --steps 200 --out "$W/run-wm"
  step train-mim 110 python3 -m drrkit train --config train-xwin-small-phantoms-mim --store "$W/phantoms.zarr" \
      --steps 200 --out "$W/run-mim"
  step evaluate 150 python3 -m drrkit evaluate "$W/run-wm" --compare "$W/run-mim"
  cp "$W/run-wm/evaluation.json" "$R/train-eval-$T.json"
  cp "$W/run-wm/metrics.jsonl" "$R/train-metrics-$T.jsonl"; cp "$W/run-wm/loss_curve.png" "$R/" 2>/dev/null
  cp "$W/run-wm/train_summary.json" "$R/train-summary-$T.json" 2>/dev/null
  step bench-train 80 python3 benchmarks/bench_train.py --config train-xwin-small-phantoms \
      --store "$W/phantoms.zarr" --device cuda --workers 8 --batches 5 --steps 5 --out "$R/train-$T.json"
  step recon-model 60 python3 -m drrkit reconstruct --store "$W/phantoms.zarr" --ct phantom_0120 \
      --checkpoint "$W/run-wm" --truth --out "$W/model-recon.nii.gz" --report "$R/recon-model-$T.json" \
      --figure "$R/recon-model-$T.png"
  ;;
final)  # fourth call: the phantom cohort, 1,000 steps of each run, evaluation, model reconstruction
  step phantoms 40 python3 -m drrkit phantom --n 128 --shape 128 --out "$W/phantoms"
  step render-phantoms 60 python3 -m drrkit render --ct-dir "$W/phantoms" --poses xwin --height 224 \
      --out "$W/phantoms.zarr" --overwrite
  step train-wm 260 python3 -m drrkit train --config train-xwin-small-phantoms --store "$W/phantoms.zarr" \
      --steps 1000 --out "$W/run-wm"
  step evaluate 60 python3 -m drrkit evaluate "$W/run-wm"
  cp "$W/run-wm/evaluation.json" "$R/train-eval-$T.json"; cp "$W/run-wm/metrics.jsonl" "$R/train-metrics-$T.jsonl"
  cp "$W/run-wm/loss_curve.png" "$R/"; cp "$W/run-wm/train_summary.json" "$R/train-summary-$T.json"
  step recon-model 40 python3 -m drrkit reconstruct --store "$W/phantoms.zarr" --ct phantom_0120 \
      --checkpoint "$W/run-wm" --truth --out "$W/model-recon.nii.gz" --report "$R/recon-model-$T.json" \
      --figure "$R/recon-model-$T.png"
  step train-mim 120 python3 -m drrkit train --config train-xwin-small-phantoms-mim --store "$W/phantoms.zarr" \
      --steps 1000 --out "$W/run-mim"
  step evaluate-compare 60 python3 -m drrkit evaluate "$W/run-wm" --compare "$W/run-mim"
  cp "$W/run-wm/evaluation.json" "$R/train-eval-$T.json"
  ;;
corpus-procs)  # next GPU session (issue 3): several worker processes per GPU, faster NIfTI reads,
  # freed memory kept between CTs (each --workers value also with the allocator defaults it replaced).
  # Step limits add up to 530 s: one device call (600 s at most) with the wheel install.
  step pytest-gpu 150 python3 -m pytest -q -m gpu -p no:cacheprovider tests
  # 64 distinct CTs, each rendered 4 times (256 CT tasks): start-up then weighs as in a real corpus.
  # --workers 8 (auto on 16 cores) and 1 (16 task threads: the read path no longer holds the GIL);
  # the JSON is rewritten after each run, so a step cut short keeps what finished.
  step bench-corpus 280 python3 benchmarks/bench_corpus.py --n-cts 64 --repeat 4 --depth 300 --height 256 \
      --device cuda --workers 8 1 --allocator both --peer-cts 4 --workdir "$W/corpus" --out "$R/corpus-$T.json"
  # the X-WIN release renders at 512x512: the same CTs at its resolution
  step bench-corpus-512 100 python3 benchmarks/bench_corpus.py --n-cts 64 --depth 300 --height 512 --device cuda \
      --workers 8 --peer-cts 2 --workdir "$W/corpus" --out "$R/corpus512-$T.json"
  rm -rf "$W/corpus"
  ;;
corpus-long)  # next GPU session (issue 3), ~300 s: corpus-procs (2026-12-04) spent ~21 s of each 35 s run before
  # the first CT or after the last (256 tasks), so the same kind of CTs as a longer corpus: 32 CTs of
  # 512x512x300, each named 16 times (512 tasks) at 256^2, both with host threads asleep while they wait on
  # the GPU (drrkit's default since 2026-12-04) and spinning (CUDA's default: the A/B of device_wait.py),
  # then 4 times at 512^2. New since corpus-procs, none measured on a GPU: start-up steps in the report,
  # autotuned tiles kept on disk (triton_march.py), sleeping waits, GPU use between first and last CT;
  # since 2026-12-05: tiles tuned by one process of the machine at a time (render/tuning_lock.py), CTs
  # submitted while the workers' renderers and CUDA contexts build (pipeline/worker.py), and the report's
  # plugin/shutdown/outside-run seconds (where the ~21 s went).
  step pytest-gpu-new 60 python3 -m pytest -q -m gpu -p no:cacheprovider tests/render/test_device_wait.py \
      tests/render/test_triton_march.py tests/render/test_tuning_lock.py tests/pipeline/test_dask.py
  step bench-corpus-long 155 python3 benchmarks/bench_corpus.py --n-cts 32 --repeat 16 --depth 300 --height 256 \
      --device cuda --workers 8 --cuda-wait both --peer-cts 4 --workdir "$W/corpus" --out "$R/corpus-long-$T.json"
  step bench-corpus512-long 80 python3 benchmarks/bench_corpus.py --n-cts 32 --repeat 4 --depth 300 --height 512 \
      --device cuda --workers 8 --peer-cts 2 --workdir "$W/corpus" --out "$R/corpus512-long-$T.json"
  rm -rf "$W/corpus"
  ;;
probes)  # next GPU session (issue 5): train on a large phantom cohort, probe on an unseen one.
  # On the 2-core CPU (benchmarks/README.md, "Cohort size") 2,048 training phantoms instead of 128 put the
  # context encoder's lung-volume probes above random init with both seeds tried, where 128 did not; 1,000
  # steps of 64 contexts here are 31 epochs of 2,048 CTs (the CPU runs: 5 epochs of 2,048, 75 of 128).
  # Probes and retrieval run on 512 unseen phantoms (cohort seed 1), the CPU protocol. PROBE_CTS sets the
  # training cohort. Images are stored as float16 (2,048 x 61 views at 224^2: 12.5 GB instead of 25).
  # Step limits add up to 560 s: one device call (600 s at most) with the wheel install. The 1,000 steps
  # took ~240 s on the H200 on 2026-11-23, hence 270. A render cut short leaves a store whose done CTs are
  # trained on (train_summary.json says how many).
  n=${PROBE_CTS:-2048}
  step phantoms 40 python3 -m drrkit phantom --n "$n" --shape 128 --out "$W/phantoms$n"
  step phantoms-unseen 10 python3 -m drrkit phantom --n 512 --shape 128 --seed 1 --out "$W/unseen512"
  step render-phantoms 110 python3 -m drrkit render --ct-dir "$W/phantoms$n" --poses xwin --height 224 \
      --dtype float16 --out "$W/phantoms$n.zarr" --workers auto --overwrite
  step render-unseen 30 python3 -m drrkit render --ct-dir "$W/unseen512" --poses xwin --height 224 --views 13 \
      --dtype float16 --out "$W/unseen512.zarr" --workers auto --overwrite
  step train-wm 270 python3 -m drrkit train --config train-xwin-small-phantoms --store "$W/phantoms$n.zarr" \
      --steps 1000 --out "$W/run-wm$n"
  step evaluate 100 python3 -m drrkit evaluate "$W/run-wm$n" --store "$W/unseen512.zarr"
  cp "$W/run-wm$n/evaluation.json" "$R/train-eval-cohort$n-unseen512-$T.json"
  cp "$W/run-wm$n/metrics.jsonl" "$R/train-metrics-cohort$n-$T.jsonl"
  cp "$W/run-wm$n/train_summary.json" "$R/train-summary-cohort$n-$T.json"
  cp "$W/phantoms$n.zarr.report.json" "$R/render-cohort$n-$T.report.json"
  # Beyond the 560 s, in whatever the call has left (everything above is copied already): the same probes
  # at coarser pooling and before the final LayerNorm, where on the CPU (2,048 training CTs, 64^2) training's
  # gain over random init showed with both seeds tried (benchmarks/README.md, "Pooling, like for like"):
  # does it hold at 224^2?
  step probe-pooling 60 python3 benchmarks/probe_pooling.py --store "$W/unseen512.zarr" --run "$W/run-wm$n" \
      --grids 0 2 4 --pixel-grids 2 4 16 --pre-norm --device cuda --out "$R/probe-pooling-cohort$n-unseen512-$T.json"
  ;;
esac
nvidia-smi > "$R/nvidia-smi-end.txt" 2>&1
