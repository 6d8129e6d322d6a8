"""A small inference service for tests: FastAPI, served by uvicorn (`uvicorn app:app`).

GET /health, GET /v1/models, and POST /v1/completions, which reads the "weights" (model.txt,
next to this file) on every request and answers with words taken from them.
"""

import os
import time

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel

HERE = os.path.dirname(os.path.abspath(__file__))
WEIGHTS = os.path.join(HERE, 'model.txt')
MODEL = 'monitor-tiny'

app = FastAPI(title='monitor-test inference stand-in')


class CompletionRequest(BaseModel):
    prompt: str
    model: str = MODEL
    max_tokens: int = 8


def load_weights():
    with open(WEIGHTS) as f:
        return f.read().split()


@app.get('/health')
def health():
    return {'status': 'ok'}


@app.get('/v1/models')
def models():
    return {'object': 'list',
            'data': [{'id': MODEL, 'object': 'model', 'owned_by': 'monitor-test'}]}


@app.post('/v1/completions')
def completions(request: CompletionRequest):
    if request.model != MODEL:
        raise HTTPException(status_code=404, detail='no model %r' % request.model)
    weights = load_weights()
    start = sum(map(ord, request.prompt)) % len(weights)
    count = max(1, min(request.max_tokens, len(weights)))
    words = [weights[(start + i) % len(weights)] for i in range(count)]
    return {
        'id': 'cmpl-monitor-test-%d' % int(time.time() * 1000),
        'object': 'text_completion',
        'created': int(time.time()),
        'model': MODEL,
        'choices': [{'index': 0, 'text': ' '.join(words), 'logprobs': None,
                     'finish_reason': 'length'}],
        'usage': {'prompt_tokens': len(request.prompt.split()), 'completion_tokens': count,
                  'total_tokens': len(request.prompt.split()) + count},
    }
