# smppguard in a container: SMPP on 2775, metrics and /healthz on 9775, the store in the volume.
#   docker build -t smppguard .
#   docker run -p 2775:2775 -p 9775:9775 -v smppguard:/var/lib/smppguard smppguard
# Configure it by mounting a file over /etc/smppguard/smppguard.toml (or elsewhere, with SMPPGUARD_CONFIG).
FROM python:3.11.11-slim-bookworm
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 SMPPGUARD_CONFIG=/etc/smppguard/smppguard.toml
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
COPY config/smppguard.toml /etc/smppguard/smppguard.toml
# The shipped config listens on 127.0.0.1; in a container both listeners face the container's network.
RUN pip install --no-cache-dir . \
    && sed -i 's/^address = "127.0.0.1:2775"/address = "0.0.0.0:2775"/; s/^address = "127.0.0.1:9775"/address = "0.0.0.0:9775"/' \
        /etc/smppguard/smppguard.toml \
    && useradd --system --uid 10001 --home-dir /var/lib/smppguard smppguard \
    && install -d -o smppguard -g smppguard -m 0700 /var/lib/smppguard \
    && rm -rf /src
USER smppguard
WORKDIR /var/lib/smppguard
VOLUME ["/var/lib/smppguard"]
EXPOSE 2775 9775
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, sys, tomllib, urllib.request; c = tomllib.load(open(os.environ['SMPPGUARD_CONFIG'], 'rb')); h, _, p = c.get('metrics', {}).get('address', '127.0.0.1:9775').rpartition(':'); h = '127.0.0.1' if h in ('', '0.0.0.0') else h; sys.exit(0 if urllib.request.urlopen(f'http://{h}:{p}/healthz', timeout=4).status == 200 else 1)"]
STOPSIGNAL SIGTERM
CMD ["smppguard", "run"]
