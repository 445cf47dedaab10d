# syntax=docker/dockerfile:1
# The pairaug-ray image: the official Ray image of the Ray and Python versions CI tests, plus this
# package and its pinned dependencies. Nothing secret and no data or model weights are baked in: S3
# access comes from the pod's service account or a referenced Secret, models from s3:// or the hub
# at run time. Build and push: docs/deployment.md ("Build and push the image").
#
# One CUDA stack: PyPI's torch brings its own CUDA runtime, cuDNN and NCCL as nvidia-* wheels, and the
# node's driver is mounted by the NVIDIA container runtime (GPU operator / device plugin). A CUDA base
# image (Ray's -gpu tags) would add a second, unused CUDA toolkit of several GB, so the base is Ray's
# CPU image; the same image serves the CPU and the GPU worker groups.
FROM rayproject/ray:2.60.0-py311-cpu

LABEL org.opencontainers.image.title="pairaug-ray" \
      org.opencontainers.image.description="PairAug radiology vision-language augmentation and CLIP pretraining on Ray" \
      org.opencontainers.image.licenses="Apache-2.0"

# No .pyc files beside the code; unbuffered output for `kubectl logs` and `ray job logs`.
# NVIDIA_*: what the NVIDIA container runtime exposes on GPU nodes (CUDA's own images set the same).
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility

# The Ray image's unprivileged user "ray" (uid 1000, group users 100), numeric so that Kubernetes'
# runAsNonRoot can verify it. Its conda Python (/home/ray/anaconda3) is writable by it.
USER 1000:100
WORKDIR /home/ray/pairaug

# Dependencies in their own layer, so that a code change does not reinstall torch. Pinned: each pin
# satisfies pyproject.toml's range (tests/test_dockerfile.py checks that every dependency is here).
# torch from PyPI is the CUDA build. open_clip_torch is installed for its data only, without its
# dependencies (they would pull torchvision): it carries the CLIP BPE vocabulary that models built
# from scratch (models.build_tiny, train.init: null) tokenize with (pairaug_ray/models/tokenizer.py).
RUN python -m pip install --no-cache-dir \
        "ray[default,data,train]==2.60.0" \
        "torch==2.13.0" \
        "diffusers==0.42.1" \
        "transformers==5.24.0" \
        "safetensors==0.8.0" \
        "openai==3.57.0" \
        "pyarrow==26.0.1" \
        "s3fs==2026.9.0" \
        "fsspec==2026.9.0" \
        "kubernetes==37.0.1" \
        "pydantic==2.14.4" \
        "PyYAML==6.0.4" \
        "Pillow==13.0.0" \
        "pydicom==3.0.2" \
        "numpy==2.4.6" \
        "scipy==1.17.1" \
        "pandas==3.1.1" \
        "scikit-learn==1.9.1" \
        "matplotlib==3.11.2" \
        "tqdm==4.70.1" \
        "sqlalchemy==2.1.9" \
        "alembic==1.20.1" \
        "fastapi==0.165.0" \
        "uvicorn==0.55.0" \
        "jinja2==3.1.6" \
        "psycopg[binary]==3.3.9" \
    && python -m pip install --no-cache-dir --no-deps "open_clip_torch==3.3.0"

# The package itself, leaving the pinned dependencies alone; `pairaug --version` proves the entry point.
COPY --chown=1000:100 pyproject.toml README.md ./
COPY --chown=1000:100 pairaug_ray ./pairaug_ray
COPY --chown=1000:100 configs ./configs
RUN python -m pip install --no-cache-dir --no-deps . \
    && pairaug --version
