"""A fake OpenAI-compatible provider for tests (standard library only).

Usage: provider.py ADDRESS PORT

POST /v1/chat/completions (non-streaming), POST /v1/embeddings, GET /v1/models, and
GET /stats: {"requests": N, "by_path": {...}, "models": [...]} counting the API requests served
(not /stats itself). Answers name the provider ("fake-provider") so a test can tell them from
anything else. Prints "ready" once listening, then one line per request.
"""

import http.server
import json
import sys
import threading
import time

MODELS = ['fake-chat', 'fake-chat-mini', 'fake-embed']
STATS = {'requests': 0, 'by_path': {}, 'models': []}
LOCK = threading.Lock()


def count(path, model=None):
    with LOCK:
        STATS['requests'] += 1
        STATS['by_path'][path] = STATS['by_path'].get(path, 0) + 1
        if model is not None:
            STATS['models'].append(model)


def words(text):
    return max(1, len(str(text).split()))


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'

    def do_GET(self):
        path = self.path.split('?', 1)[0]
        if path == '/stats':
            with LOCK:
                self.reply(200, json.loads(json.dumps(STATS)))
        elif path in ('/v1/models', '/models'):
            count(path)
            self.reply(200, {'object': 'list', 'data': [
                {'id': m, 'object': 'model', 'created': 0, 'owned_by': 'fake-provider'}
                for m in MODELS]})
        else:
            self.reply(404, {'error': {'message': 'no route ' + path, 'type': 'not_found'}})

    def do_POST(self):
        path = self.path.split('?', 1)[0]
        length = int(self.headers.get('Content-Length') or 0)
        try:
            body = json.loads(self.rfile.read(length) or b'{}')
        except ValueError:
            self.reply(400, {'error': {'message': 'body is not JSON', 'type': 'invalid_request'}})
            return
        model = body.get('model', 'unknown')
        if path in ('/v1/chat/completions', '/chat/completions'):
            count(path, model)
            messages = body.get('messages') or [{}]
            last = messages[-1].get('content', '')
            prompt_tokens = sum(words(m.get('content', '')) for m in messages)
            content = 'fake-provider says: %s' % last
            self.reply(200, {
                'id': 'chatcmpl-fake-%d' % STATS['requests'],
                'object': 'chat.completion',
                'created': int(time.time()),
                'model': model,
                'system_fingerprint': 'fp_fake_provider',
                'choices': [{'index': 0, 'message': {'role': 'assistant', 'content': content},
                             'logprobs': None, 'finish_reason': 'stop'}],
                'usage': {'prompt_tokens': prompt_tokens, 'completion_tokens': words(content),
                          'total_tokens': prompt_tokens + words(content)},
            })
        elif path in ('/v1/embeddings', '/embeddings'):
            count(path, model)
            inputs = body.get('input', '')
            if isinstance(inputs, str) or (inputs and isinstance(inputs[0], int)):
                inputs = [inputs]
            data = [{'object': 'embedding', 'index': i,
                     'embedding': [round(((len(str(text)) + i + k) % 7) / 7.0, 4)
                                   for k in range(8)]}
                    for i, text in enumerate(inputs)]
            tokens = sum(words(t) for t in inputs)
            self.reply(200, {'object': 'list', 'data': data, 'model': model,
                             'usage': {'prompt_tokens': tokens, 'total_tokens': tokens}})
        else:
            self.reply(404, {'error': {'message': 'no route ' + path, 'type': 'not_found'}})

    def reply(self, code, obj):
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header('Content-Type', 'application/json')
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt, *args):
        sys.stdout.write('%s %s\n' % (self.address_string(), fmt % args))
        sys.stdout.flush()


def main():
    address, port = sys.argv[1], int(sys.argv[2])
    server = http.server.ThreadingHTTPServer((address, port), Handler)
    server.daemon_threads = True
    print('ready', flush=True)
    server.serve_forever()


if __name__ == '__main__':
    main()
