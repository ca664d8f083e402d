"""The baseline of the ingest benchmark: FastAPI on uvicorn answering POST /check with
txmon's reply and doing nothing else (no validation, no Kafka)."""

from fastapi import FastAPI

app = FastAPI()


@app.post("/check")
async def check():
    return {"message": "Transaction registered"}


@app.get("/healthz")
async def healthz():
    return {"ok": True}
