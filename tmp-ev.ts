import * as Event from "./src/log/Event.ts"
import * as LogCodec from "./src/log/LogCodec.ts"
import * as LogRecord from "./src/log/LogRecord.ts"
const N = 300_000
const session = "w0-mk3h2x9a-00001f"
const mk = (i: number) => Event.make("ReplySent", { session, at: 1733480000000 + i, code: 250, enhanced: "2.1.0", lines: ["Ok"] })
const mkc = (i: number) => Event.make("CommandReceived", { session, at: 1733480000000 + i, line: "MAIL FROM:<a@b.test>" })
for (let r = 0; r < 5; r++) {
  let t = performance.now(); let s = 0
  for (let i = 0; i < N; i++) s += mk(i).at
  const tMake = (performance.now() - t) / N * 1e3
  t = performance.now()
  for (let i = 0; i < N; i++) s += LogCodec.encode(i & 1 ? mk(i) : mkc(i)).length
  const tEnc = (performance.now() - t) / N * 1e3
  const payloads = Array.from({ length: 16 }, (_, i) => LogCodec.encode(mk(i)).slice())
  t = performance.now()
  for (let i = 0; i < N / 16; i++) { const b = new Uint8Array(16 * 200); let o = 0; for (const p of payloads) o = LogRecord.writeFrameInto(b, o, p); s += o }
  const tFrame = (performance.now() - t) / N * 1e3
  console.log(`make ${tMake.toFixed(3)} us, make+encode ${tEnc.toFixed(3)} us, frame ${tFrame.toFixed(3)} us, bytes ${payloads[0]!.length}`, s > 0)
}
