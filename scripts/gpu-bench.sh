#!/usr/bin/env bash
# The GPU speed figures the neural-models work asks for, in one go, on a CUDA machine. Prints numbers and
# asserts nothing: the targets are StyleGAN2 1024 px >= 120 fps, 512 px >= 300 fps, the DeepDream loop at
# 1280x720 with 2 steps >= 30 fps, and the whole engine at 1920x1080 at 60 fps with p99 frame time < 16.7 ms.
#
#   scripts/gpu-bench.sh [tests|models|engine|all]     (default all)
#
# VJ is the command that runs vj (default: vj; e.g. VJ="python3 -m vj.cli" from a checkout). FRAMES scales
# the timed frames. DRY=1 prints the commands instead of running them. Everything here needs CUDA except
# the engine's shader chain, which needs GL on the GPU (EGL on the NVIDIA driver) to mean anything.
set -u
VJ=${VJ:-vj}
FRAMES=${FRAMES:-100}
WHAT=${1:-all}

step() {
    echo
    echo "\$ $VJ $*"
    [ "${DRY:-0}" = 1 ] && return 0
    # shellcheck disable=SC2086
    $VJ "$@" 2>&1 | grep -v ": INFO: "
}

if [ "${DRY:-0}" != 1 ]; then
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 || true
    python3 -c 'import torch; print("torch", torch.__version__, "CUDA", torch.version.cuda,
          torch.cuda.get_device_name() if torch.cuda.is_available() else "(no CUDA device)")' 2>&1 || true
fi

case $WHAT in tests|all)
    # Correctness first: the CUDA frame paths and the models on the GPU against the original code's images.
    echo
    echo "\$ python3 -m pytest -q tests/test_cuda_frames.py tests/test_models_devices.py"
    [ "${DRY:-0}" = 1 ] || python3 -m pytest -q -p no:cacheprovider tests/test_cuda_frames.py \
        tests/test_models_devices.py 2>&1 | tail -15
    ;;
esac

case $WHAT in models|all)
    # StyleGAN2 at the published 1024 and 512 px architectures (random weights cost what trained ones do),
    # each backend and precision against eager fp32.
    step bench model --model stylegan2 --size 1024 --backends eager,compile,onnx,tensorrt \
        --precision fp32,fp16,bf16 --frames "$FRAMES"
    step bench model --model stylegan2 --size 512 --backends eager,compile,tensorrt \
        --precision fp32,fp16,bf16 --frames $((FRAMES * 2))
    step bench model --model stylegan3 --size 1024 --backends eager,compile --precision fp32,fp16 \
        --frames $((FRAMES / 2 + 1))
    # The DeepDream loop at 1280x720, 2 steps a frame (the default): on itself, then with its CPPN source.
    step bench model --model deepdream --size 1280x720 --set source=self --frames $((FRAMES / 2 + 1))
    step bench model --model deepdream --size 1280x720 --frames $((FRAMES / 2 + 1))
    ;;
esac

case $WHAT in engine|all)
    # The whole engine at 1080p: stage times, the live loop's frame time p50/p99, and (with a CUDA model)
    # the three frame paths from the model's tensor to the GL texture side by side.
    step bench --size 1920x1080 --frames "$FRAMES" --preset default
    step bench --size 1920x1080 --frames "$FRAMES" --preset dream --model-size 1280x720
    # Projection outputs: the warp passes of one and two 1920x1080 outputs, headless (no display there).
    step bench outputs --headless --size 1920x1080
    ;;
esac
