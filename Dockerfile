# One image for every process: web (gunicorn + uvicorn workers), Celery worker and beat, and migrations. Training
# workers build it with REQUIREMENTS=requirements-training.txt (the same plus torch), so the others stay small.
FROM python:3.11-slim-bookworm
ARG REQUIREMENTS=requirements.txt

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MLOPS_DATA_DIR=/var/lib/mlops

WORKDIR /app

# Dependencies before the code, so a code change does not reinstall them. Every pin has a wheel (psycopg
# binary included), so no compiler or libpq is needed.
COPY requirements.txt requirements-training.txt ./
RUN pip install -r "$REQUIREMENTS"

COPY . .

RUN useradd --system --uid 10001 --home-dir /app mlops \
    && mkdir -p "$MLOPS_DATA_DIR" \
    && chown mlops "$MLOPS_DATA_DIR"
USER mlops

EXPOSE 8000
CMD ["gunicorn", "mlops.asgi:application", "--worker-class", "uvicorn_worker.UvicornWorker", \
     "--logger-class", "mlops.observability.GunicornJsonLogger", "--config", "python:mlops.gunicorn_conf", \
     "--bind", "0.0.0.0:8000"]
