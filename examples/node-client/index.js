#!/usr/bin/env node
// Submits one jetqueue job over NATS and prints each lifecycle event of that
// job as one JSON line, until the job ends. It speaks the wire protocol of
// docs/PROTOCOL.md directly: a msgpack SubmitRequest on jq.api.submit, then
// the job's events from the JQ_EVENTS stream through an ordered consumer.
//
// Usage: node index.js [--nats URL] [--prefix PREFIX] [--priority N]
//                      [--timeout SECONDS] PLUGIN [key=value ...]
//
// Exit status, as `jetqueue wait`: 0 completed, 1 failed or an error (on
// stderr), 2 cancelled or a usage error, 3 timed out (the job carries on).

import { parseArgs } from "node:util";

import { decode, encode } from "@msgpack/msgpack";
import { ErrorCode, connect } from "nats";

const PROTOCOL_VERSION = 1;
const DEFAULT_NATS_URL = "nats://127.0.0.1:4222";
const DEFAULT_PREFIX = "jq";
const REQUEST_TIMEOUT_MS = 5000;

const EXIT_OK = 0;
const EXIT_FAILED = 1;
const EXIT_CANCELLED = 2;
const EXIT_USAGE = 2;
const EXIT_TIMEOUT = 3;

const FINAL_EVENTS = new Map([
  ["completed", EXIT_OK],
  ["failed", EXIT_FAILED],
  ["cancelled", EXIT_CANCELLED],
]);

const USAGE = `usage: node index.js [--nats URL] [--prefix PREFIX] [--priority N] [--timeout SECONDS] PLUGIN [key=value ...]

Submits a job of PLUGIN and prints its events as JSON lines until it ends.
Each key=value sets one keyword argument: a value that is valid JSON keeps its
type (n=3 is the integer 3), any other value is a string.

  --nats URL         NATS server (env JETQUEUE_NATS, default ${DEFAULT_NATS_URL})
  --prefix PREFIX    subject prefix of the queue (env JETQUEUE_PREFIX, default ${DEFAULT_PREFIX})
  --priority N       job priority, higher runs first (default 0)
  --timeout SECONDS  stop waiting after this long and exit 3 (default: no limit)`;

// UsageError is a mistake on the command line: the usage goes to stderr.
class UsageError extends Error {}

// ApiError is an error reply of the coordinator: a stable code and a message.
class ApiError extends Error {
  constructor(code, message) {
    super(`${code}: ${message}`);
    this.code = code;
  }
}

// parseCommandLine returns the settings of one run, or throws UsageError.
function parseCommandLine(argv, env) {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        nats: { type: "string", default: env.JETQUEUE_NATS || DEFAULT_NATS_URL },
        prefix: { type: "string", default: env.JETQUEUE_PREFIX || DEFAULT_PREFIX },
        priority: { type: "string", default: "0" },
        timeout: { type: "string", default: "0" },
        help: { type: "boolean", short: "h", default: false },
      },
    });
  } catch (err) {
    throw new UsageError(err.message);
  }
  const { values, positionals } = parsed;
  if (values.help) {
    return { help: true };
  }

  const [plugin, ...pairs] = positionals;
  if (!plugin) {
    throw new UsageError("missing PLUGIN: name the plugin to run, such as sleep");
  }
  const priority = Number(values.priority);
  if (!Number.isInteger(priority) || priority < -(2 ** 31) || priority >= 2 ** 31) {
    throw new UsageError(`--priority ${values.priority} is invalid: use an integer within int32`);
  }
  const timeoutSeconds = Number(values.timeout);
  if (!Number.isFinite(timeoutSeconds) || timeoutSeconds < 0) {
    throw new UsageError(`--timeout ${values.timeout} is invalid: use a number of seconds, 0 for no limit`);
  }
  if (!/^[A-Za-z0-9_-]{1,64}$/.test(values.prefix)) {
    throw new UsageError(`--prefix ${values.prefix} is invalid: use 1 to 64 letters, digits, '-' or '_'`);
  }

  return {
    help: false,
    url: values.nats,
    prefix: values.prefix,
    plugin,
    kwargs: parseKwargs(pairs),
    priority,
    timeoutMs: timeoutSeconds * 1000,
  };
}

// parseKwargs turns key=value arguments into an object. A value that parses
// as JSON keeps its JSON type; any other value is a string.
function parseKwargs(pairs) {
  const kwargs = {};
  for (const pair of pairs) {
    const eq = pair.indexOf("=");
    if (eq <= 0) {
      throw new UsageError(`argument ${JSON.stringify(pair)} is not key=value`);
    }
    const key = pair.slice(0, eq);
    const text = pair.slice(eq + 1);
    try {
      kwargs[key] = JSON.parse(text);
    } catch {
      kwargs[key] = text;
    }
  }
  return kwargs;
}

// submit sends a SubmitRequest and returns the new job's id. An error reply
// is thrown as an ApiError.
async function submit(nc, settings) {
  const subject = `${settings.prefix}.api.submit`;
  const request = {
    v: PROTOCOL_VERSION,
    plugin_name: settings.plugin,
    args: null,
    kwargs: Object.keys(settings.kwargs).length > 0 ? settings.kwargs : null,
    priority: settings.priority,
  };

  let reply;
  try {
    reply = await nc.request(subject, encode(request), { timeout: REQUEST_TIMEOUT_MS });
  } catch (err) {
    if (err.code === ErrorCode.NoResponders) {
      throw new Error(`no coordinator listens on ${subject}: start one with \`jetqueue serve\`, or check --nats and --prefix`);
    }
    if (err.code === ErrorCode.Timeout) {
      throw new Error(`no reply on ${subject} within ${REQUEST_TIMEOUT_MS} ms: check that a coordinator runs on ${settings.url}`);
    }
    throw err;
  }

  const apiError = replyError(reply);
  if (apiError) {
    throw apiError;
  }
  const body = decode(reply.data);
  if (!body || typeof body.id !== "string" || body.id === "") {
    throw new Error(`invalid reply on ${subject}: it has no job id`);
  }
  return body.id;
}

// replyError returns the ApiError that a reply carries, or null. Errors come
// as NATS micro headers plus a msgpack {code, message} body; when the body
// does not decode, the headers give the status number and the message.
function replyError(reply) {
  const status = reply.headers?.get("Nats-Service-Error-Code") ?? "";
  const text = reply.headers?.get("Nats-Service-Error") ?? "";
  if (status === "" && text === "") {
    return null;
  }

  try {
    const body = decode(reply.data);
    if (body && typeof body.code === "string" && body.code !== "") {
      return new ApiError(body.code, body.message || text);
    }
  } catch {
    // The headers below describe the error.
  }
  return new ApiError(`status ${status}`, text || "the coordinator returned an error without a message");
}

// eventLine returns the JSON line printed for one event.
function eventLine(event) {
  const job = event.job ?? {};
  const line = {
    event: event.event,
    job_id: job.id,
    plugin: job.plugin_name,
    status: job.status,
    progress: job.progress,
    status_message: job.status_message,
    attempt: job.attempt,
    time: event.time,
  };
  if (job.status === "completed") {
    line.result = job.result;
  }
  if (job.error) {
    line.error = job.error;
  }
  return JSON.stringify(line, jsonValue);
}

// jsonValue prints msgpack binary values as strings, as the Go tools do.
function jsonValue(_key, value) {
  if (value instanceof Uint8Array) {
    return new TextDecoder().decode(value);
  }
  return value;
}

// followJob prints every event of the job, oldest first, and returns the
// exit status of its final event. The consumer replays the events stored
// before it started, so none between the submit and the first read is lost.
async function followJob(nc, settings, id, out) {
  const stream = `${settings.prefix.toUpperCase()}_EVENTS`;
  const js = nc.jetstream();
  // An ordered consumer of nats.js 2.29.3 starts at stream sequence 1, so it
  // delivers every stored event by default. Do not pass DeliverPolicy.All:
  // nats.js then also sends a start sequence, which nats-server rejects, and
  // consume() retries the creation forever without an error.
  const consumer = await js.consumers.get(stream, {
    filterSubjects: [`${settings.prefix}.evt.*.${id}.*`],
  });

  const messages = await consumer.consume();
  try {
    for await (const msg of messages) {
      const event = decode(msg.data);
      out.write(eventLine(event) + "\n");
      if (FINAL_EVENTS.has(event.event)) {
        return FINAL_EVENTS.get(event.event);
      }
    }
  } finally {
    await messages.close();
  }
  throw new Error(`the event stream ${stream} ended before job ${id} did`);
}

// main runs the program and returns its exit status.
async function main(argv, env, out, err) {
  let settings;
  try {
    settings = parseCommandLine(argv, env);
  } catch (e) {
    if (e instanceof UsageError) {
      err.write(`jetqueue-node-client: ${e.message}\n${USAGE}\n`);
      return EXIT_USAGE;
    }
    throw e;
  }
  if (settings.help) {
    out.write(USAGE + "\n");
    return EXIT_OK;
  }

  let nc;
  try {
    nc = await connect({ servers: settings.url, name: "jetqueue-node-client" });
  } catch (e) {
    err.write(`jetqueue-node-client: connect to ${settings.url}: ${e.message}: start a server with \`jetqueue serve\` or pass --nats\n`);
    return EXIT_FAILED;
  }

  let timer;
  try {
    const id = await submit(nc, settings);
    const follow = followJob(nc, settings, id, out);
    if (settings.timeoutMs === 0) {
      return await follow;
    }
    // Closing the connection after a timeout ends the follow with an error
    // that nobody awaits any more.
    follow.catch(() => {});
    const timeout = new Promise((resolve) => {
      timer = setTimeout(() => resolve(null), settings.timeoutMs);
    });
    const status = await Promise.race([follow, timeout]);
    if (status === null) {
      err.write(`jetqueue-node-client: job ${id} did not end within ${settings.timeoutMs / 1000} s; it carries on\n`);
      return EXIT_TIMEOUT;
    }
    return status;
  } catch (e) {
    err.write(`jetqueue-node-client: ${e.message}\n`);
    return EXIT_FAILED;
  } finally {
    clearTimeout(timer);
    await nc.close();
  }
}

// process.exit, not process.exitCode: after a timeout, the consumer of the
// abandoned follow may keep timers alive past the connection's close.
process.exit(await main(process.argv.slice(2), process.env, process.stdout, process.stderr));
