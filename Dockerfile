FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY src ./src
COPY config/smppguard.toml /etc/smppguard/smppguard.toml
RUN pip install --no-cache-dir . && useradd --system --home /var/lib/smppguard --create-home smppguard
USER smppguard
WORKDIR /var/lib/smppguard
EXPOSE 2775
# The shipped config listens on 127.0.0.1; in a container, listen on every interface.
CMD ["smppguard", "run", "--config", "/etc/smppguard/smppguard.toml", "--listen", "0.0.0.0:2775"]
