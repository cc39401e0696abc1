FROM python:3.11-slim
WORKDIR /app
# CPU build of PyTorch from its own index; the project pins a range that this satisfies.
RUN pip install --no-cache-dir torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
COPY pyproject.toml README.md ./
COPY search_spaces search_spaces
COPY latency_lut latency_lut
COPY nas nas
COPY api api
RUN pip install --no-cache-dir .
ENV HWNAS_DATABASE_URL=sqlite:////data/hwnas.db
ENTRYPOINT []
CMD ["hwnas", "--help"]
