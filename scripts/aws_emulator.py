"""The local AWS emulator: moto's server, plus SQS's message move task, which moto lacks, and
without the per-request folder listing and request log, and the whole-table sort of each
DynamoDB query, that slow moto down under load.

StartMessageMoveTask, ListMessageMoveTasks and CancelMessageMoveTask are what
`b2b-invites redrive` sends dead-lettered messages back with. Here a task moves every visible
message of the dead-letter queue at once and is listed as COMPLETED; AWS moves them over time,
reporting RUNNING with its counts until it is done. Without a DestinationArn, AWS sends each
message back to the queue it came from; moto does not keep that, so a dead-letter queue must
serve exactly one source queue then (each of this project's queues has its own).

Run as: python aws_emulator.py -H HOST -p PORT   (moto_server's arguments)
"""

import logging
import sys
import threading
import time
import uuid

import moto.backends
import moto.server
import waitress
from moto.core.base_backend import BackendDict
from moto.core.responses import ActionResult
from moto.dynamodb.models.table import Table
from moto.server import main
from moto.sqs.exceptions import SQSException
from moto.sqs.responses import SQSResponse

# Tasks per (account, region), newest first, as ListMessageMoveTasks reports them.
_tasks: dict[tuple[str, str], list[dict]] = {}


def _queue(backend, arn):
    for queue in backend.queues.values():
        if queue.queue_arn == arn:
            return queue
    raise SQSException("ResourceNotFoundException", f"The resource that you specified for the SourceArn parameter doesn't exist: {arn}")


def start_message_move_task(self):
    backend = self.sqs_backend
    source_arn = self._get_param("SourceArn")
    destination_arn = self._get_param("DestinationArn")
    dead_letters = _queue(backend, source_arn)
    sources = backend.list_dead_letter_source_queues(dead_letters.name)
    if not sources:
        raise SQSException("InvalidParameterValue", "Source queue must be configured as a Dead Letter Queue.")
    if destination_arn:
        destination = _queue(backend, destination_arn)
    elif len(sources) == 1:
        destination = sources[0]
    else:
        raise SQSException("InvalidParameterValue", "this emulator moves back only from a dead-letter queue of one source queue; give DestinationArn")
    messages = [m for m in dead_letters._messages if m.visible]
    for message in messages:
        backend.send_message(destination.name, message.body, message_attributes=message.message_attributes)
        dead_letters._messages.remove(message)
    handle = uuid.uuid4().hex
    task = {
        "TaskHandle": handle,
        "Status": "COMPLETED",
        "SourceArn": source_arn,
        "ApproximateNumberOfMessagesMoved": len(messages),
        "ApproximateNumberOfMessagesToMove": len(messages),
        "StartedTimestamp": int(time.time() * 1000),
    }
    if destination_arn:
        task["DestinationArn"] = destination_arn
    _tasks.setdefault((self.current_account, self.region), []).insert(0, task)
    return ActionResult({"TaskHandle": handle})


def list_message_move_tasks(self):
    source_arn = self._get_param("SourceArn")
    _queue(self.sqs_backend, source_arn)
    limit = int(self._get_param("MaxResults") or 1)
    tasks = [t for t in _tasks.get((self.current_account, self.region), []) if t["SourceArn"] == source_arn]
    # A task handle is only reported while the task runs.
    results = [{k: v for k, v in t.items() if k != "TaskHandle"} for t in tasks[:limit]]
    return ActionResult({"Results": results})


def cancel_message_move_task(self):
    raise SQSException("ResourceNotFoundException", "no running message move task: this emulator completes each at once")


# moto lists its own package folder on every request, under a lock, to find the service: a
# third of its time under load. The folder does not change while it runs.
_modules = tuple(moto.backends.list_of_moto_modules())
moto.backends.list_of_moto_modules = lambda: _modules
# One log line per request costs as much again; errors still show.
logging.getLogger("werkzeug").setLevel(logging.WARNING)


# Werkzeug's development server closes every connection after one answer, so each request
# costs a new connection and a new thread: under load, more than the emulation itself.
# Waitress keeps connections alive and serves them from a pool of threads; a long-polling
# ReceiveMessage holds one thread, hence the large pool.
def _serve(host, port, app, **_werkzeug_options):
    waitress.serve(app, host=host, port=port, threads=64, connection_limit=1000, ident="moto", _quiet=True)


moto.server.run_simple = _serve

# Every request looks up its account's backend (twice: once more to note the access key's last
# use), and each lookup compares the service's backends with every other service's, whole
# dictionaries, under one global lock. An account seen once has its backend for good.
_create_account_backend = BackendDict._create_account_specific_backend


def _account_backend(self, account_id):
    if account_id not in self or not getattr(self, "_registered", False):
        _create_account_backend(self, account_id)
        self._registered = True


BackendDict._create_account_specific_backend = _account_backend

# A query of one partition makes moto sort every item of the table, and then keep that
# partition's: a ledger of tens of thousands of records spends the emulator's core on that. The
# partition alone, sorted, gives moto the same candidates.
_partition = threading.local()
_table_query, _table_all_items = Table.query, Table.all_items


def _query(self, hash_key, *args, **kwargs):
    index_name = kwargs["index_name"] if "index_name" in kwargs else (args[6] if len(args) > 6 else None)
    _partition.key = hash_key if index_name is None else None
    try:
        return _table_query(self, hash_key, *args, **kwargs)
    finally:
        _partition.key = None


def _all_items(self):
    key = getattr(_partition, "key", None)
    if key is None or key not in self.items:
        return _table_all_items(self) if key is None else []
    part = self.items[key]
    if not self.range_key_attr:
        return [part]
    return sorted(part.values(), key=lambda item: item.range_key)


Table.query = _query
Table.all_items = _all_items

SQSResponse.start_message_move_task = start_message_move_task
SQSResponse.list_message_move_tasks = list_message_move_tasks
SQSResponse.cancel_message_move_task = cancel_message_move_task

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
