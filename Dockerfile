# EventFlow image: one image for every role (`eventflow api`, `eventflow worker`, `eventflow up`).
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install --no-cache-dir --upgrade pip \
 && pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
RUN useradd --create-home --uid 10001 eventflow
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER eventflow
WORKDIR /home/eventflow
ENV EVENTFLOW_HOST=0.0.0.0 \
    EVENTFLOW_PORT=3000 \
    EVENTFLOW_DATA_DIR=/home/eventflow/data \
    PYTHONUNBUFFERED=1
EXPOSE 3000
# For the default `up` and for `api`: GET /health on EVENTFLOW_HOST:EVENTFLOW_PORT. A worker has no
# HTTP server: docker-compose.yml gives it `eventflow health` (the database and Redis answer).
HEALTHCHECK --interval=15s --timeout=10s --start-period=60s --retries=3 \
  CMD ["eventflow", "health", "--http"]
ENTRYPOINT ["eventflow"]
CMD ["up"]
