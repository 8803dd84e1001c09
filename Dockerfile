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
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s \
  CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:3000/health', timeout=2).status == 200 else 1)"
ENTRYPOINT ["eventflow"]
CMD ["up"]
