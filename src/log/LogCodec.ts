/**
 * Events and file headers as bytes: the msgpack form of the Schema-encoded event.
 *
 * Every record decodes alone (`useRecords: false`, no shared structures), so a reader can
 * start at any record boundary and a cut tail never poisons what came before it. Pure: no I/O.
 */
import { Packr, Unpackr } from "msgpackr"
import * as Event from "./Event.ts"

/** The `format` field of every log file's header record. */
export const format = "postern-log"

/** The version of the file layout (header and record framing), not of the events. */
export const fileVersion = 1

const packr = new Packr({ useRecords: false })
const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true })

/**
 * The msgpack bytes of one event. The result is a view into a buffer msgpackr reuses for
 * later, non-overlapping results: it stays valid, and callers copy it when they frame it.
 */
export const encode = (event: Event.Event): Uint8Array => packr.pack(Event.encode(event))

/** Decodes bytes written by `encode`; throws when they are not msgpack or not a known event. */
export const decode = (bytes: Uint8Array): Event.Event => Event.decode(unpackr.unpack(bytes))

/** What the first record of every log file says about the file. */
export interface Header {
  readonly format: typeof format
  readonly version: number
  /** `Event.schemaVersion` of the writer that created the file. */
  readonly eventSchema: number
  readonly partition: string
  readonly sequence: number
  /** Epoch milliseconds. */
  readonly createdAt: number
}

/** The header payload for a new file of `partition`. */
export const encodeHeader = (header: {
  readonly partition: string
  readonly sequence: number
  readonly createdAt: number
}): Uint8Array =>
  packr.pack({
    format,
    version: fileVersion,
    eventSchema: Event.schemaVersion,
    partition: header.partition,
    sequence: header.sequence,
    createdAt: header.createdAt
  })

/** The outcome of reading a header: the header, or why the bytes are not one this code can read. */
export type HeaderResult =
  | { readonly _tag: "Header"; readonly header: Header }
  | { readonly _tag: "Invalid"; readonly reason: string }

const isRecord = (u: unknown): u is Record<string, unknown> => typeof u === "object" && u !== null

/** Reads a header payload; never throws. */
export const decodeHeader = (bytes: Uint8Array): HeaderResult => {
  let value: unknown
  try {
    value = unpackr.unpack(bytes)
  } catch (error) {
    return { _tag: "Invalid", reason: `header is not msgpack: ${String(error)}` }
  }
  if (!isRecord(value) || value["format"] !== format) return { _tag: "Invalid", reason: "not a postern-log header" }
  const { version, eventSchema, partition, sequence, createdAt } = value
  if (typeof version !== "number" || version !== fileVersion) {
    return { _tag: "Invalid", reason: `unsupported log file version ${String(version)}` }
  }
  if (
    typeof eventSchema !== "number" || typeof partition !== "string" || typeof sequence !== "number" ||
    typeof createdAt !== "number"
  ) return { _tag: "Invalid", reason: "header fields missing or of the wrong type" }
  if (eventSchema > Event.schemaVersion) {
    return { _tag: "Invalid", reason: `event schema ${eventSchema} is newer than ${Event.schemaVersion}` }
  }
  return { _tag: "Header", header: { format, version, eventSchema, partition, sequence, createdAt } }
}
