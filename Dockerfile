FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    DATA_DIR=/data \
    PORT=3000

WORKDIR /app
COPY pyproject.toml README.md ./
COPY oneapi ./oneapi
COPY accounts ./accounts
COPY channels_mgmt ./channels_mgmt
COPY relay ./relay
COPY billing ./billing
COPY dashboard ./dashboard
COPY templates ./templates
COPY locale ./locale
COPY manage.py ./
# Editable, so templates/ and manage.py are found next to the code.
RUN pip install --no-cache-dir -e .

VOLUME ["/data"]
EXPOSE 3000
HEALTHCHECK --interval=30s --timeout=5s --retries=3 \
  CMD python -c "import urllib.request,os; urllib.request.urlopen('http://127.0.0.1:%s/api/status' % os.environ.get('PORT','3000'))"
# Default: the whole gateway (web + Celery worker + beat) in one container, on SQLite.
CMD ["oneapi", "--log-dir", "/data/logs"]
