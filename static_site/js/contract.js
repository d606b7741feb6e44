// What the page sends to the API and reads from it, route by route. api.js keeps only the
// fields declared here from every answer (the page cannot read anything else), refuses to
// send an undeclared field, and a test compares this document with the API's /openapi.json.
//
// "events" names the kinds of line of a task's event log (GET /tasks/{id} events[].message)
// by pattern, for the timeline; a progress line's counts are shown in the type's unit; a line
// of no known kind is shown as it is.
//
// The object below is plain JSON. A shape is `true` (the value as the API sends it), the name
// of a shape in "shapes", an object of declared fields, `[shape]` (a list of it) or
// `{"*": shape}` (a map whose values have that shape); `"$extends": "Name"` in an object adds
// the fields of that shape.

export const CONTRACT = {
  "shapes": {
    "TaskView": {
      "id": true, "type": true, "status": true, "priority": true, "params": true,
      "progress": true, "units_done": true, "units_total": true, "attempts": true,
      "max_attempts": true, "timeout_seconds": true, "cancel_requested": true,
      "created_at": true, "updated_at": true, "started_at": true, "finished_at": true,
      "run_at": true, "duration_seconds": true,
      "error": { "type": true, "message": true },
      "result": true, "result_location": true, "outputs": true, "failed_items": true
    },
    "TaskDetail": {
      "$extends": "TaskView",
      "events": [{ "time": true, "level": true, "message": true }],
      "downloads": [{ "key": true, "url": true }]
    },
    "TaskPage": { "items": ["TaskView"], "next_cursor": true },
    "TaskTypeInfo": { "name": true, "description": true, "progress_unit": true, "params_schema": true },
    "Stats": {
      "counts": { "by_status": { "*": true }, "by_type": { "*": true } },
      "queues": { "*": { "visible": true, "in_flight": true, "delayed": true, "dead_letter": true } },
      "throughput": [{ "minute": true, "succeeded": true, "failed": true, "cancelled": true }]
    },
    "DeadLetterPage": {
      "items": [{
        "id": true, "task_id": true, "task_type": true, "queue": true, "reason": true,
        "receive_count": true, "dead_at": true, "task_status": true
      }]
    },
    "RedriveResult": { "redriven": true, "skipped": true },
    "BulkResult": {
      "results": [{ "id": true, "ok": true, "status": true, "error": { "code": true, "message": true } }]
    },
    "UploadTicket": { "key": true, "prefix": true, "url": true, "method": true, "headers": true },
    "ErrorResponse": { "error": { "code": true, "message": true, "details": true } }
  },
  "routes": {
    "GET /task-types": { "response": ["TaskTypeInfo"] },
    "GET /tasks": {
      "query": ["status", "type", "created_after", "created_before", "id_prefix", "limit", "cursor"],
      "response": "TaskPage"
    },
    "POST /tasks/bulk": { "body": ["action", "ids", "restart"], "response": "BulkResult" },
    "POST /tasks": {
      "headers": ["Idempotency-Key"],
      "body": ["type", "params", "priority", "run_at", "max_attempts"],
      "response": "TaskView"
    },
    "GET /tasks/{task_id}": { "response": "TaskDetail" },
    "DELETE /tasks/{task_id}": { "response": "TaskView" },
    "POST /tasks/{task_id}/retry": { "body": ["restart"], "response": "TaskView" },
    "GET /stats": { "response": "Stats" },
    "GET /dead-letters": { "response": "DeadLetterPage" },
    "POST /dead-letters/redrive": { "response": "RedriveResult" },
    "POST /uploads": { "body": ["filename", "content_type", "size", "prefix"], "response": "UploadTicket" }
  },
  "error": "ErrorResponse",
  "params_schema_extensions": ["x-upload", "x-sources", "x-advanced"],
  "events": {
    "submitted": "^submitted$",
    "retry_requested": "^retry requested: (restart|resume)$",
    "started": "^started \\(attempt (\\d+) of (\\d+)\\)$",
    "took_over": "^took over from a worker",
    "progress": "^(\\d+)% done \\((\\d+) of (\\d+)\\)$",
    "retrying": "^attempt (\\d+) failed \\((.*)\\); retry in (\\d+) s$",
    "finished": "^finished$",
    "failed": "^failed",
    "cancel_requested": "^cancel requested$",
    "cancelled": "^cancelled"
  }
};
