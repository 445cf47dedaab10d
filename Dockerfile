# syntax=docker/dockerfile:1
# The pairaug-ray image: the official Ray image of the Ray and Python versions CI tests (CUDA build),
# plus this package and its pinned dependencies. Nothing secret and no data or model weights are
# baked in: S3 access comes from the pod's service account or a referenced Secret, models from s3://
# or the hub at run time. Build and push: docs/deployment.md ("Build and push the image").
FROM rayproject/ray:2.60.0-py311-gpu

LABEL org.opencontainers.image.title="pairaug-ray" \
      org.opencontainers.image.description="PairAug radiology vision-language augmentation and CLIP pretraining on Ray" \
      org.opencontainers.image.licenses="Apache-2.0"

# No .pyc files beside the code; unbuffered output for `kubectl logs` and `ray job logs`.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# The Ray image's unprivileged user "ray" (uid 1000, group users 100), numeric so that Kubernetes'
# runAsNonRoot can verify it. Its conda Python (/home/ray/anaconda3) is writable by it.
USER 1000:100
WORKDIR /home/ray/pairaug

# Dependencies in their own layer, so that a code change does not reinstall torch. Pinned: each pin
# satisfies pyproject.toml's range (tests/test_dockerfile.py checks that every dependency is here).
# torch from PyPI is the CUDA build.
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
        "tqdm==4.70.1"

# The package itself, leaving the pinned dependencies alone; `pairaug --version` proves the entry point.
COPY --chown=1000:100 pyproject.toml README.md ./
COPY --chown=1000:100 pairaug_ray ./pairaug_ray
COPY --chown=1000:100 configs ./configs
RUN python -m pip install --no-cache-dir --no-deps . \
    && pairaug --version
