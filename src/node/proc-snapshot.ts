/**
 * A service's state as its client gives it for a move (docs/protocol.md, Migration): the answers
 * to one `snapshot` request, `{ok: true, data, more: true}` pieces and a last one without `more`,
 * concatenated and bounded by MAX_SNAPSHOT_BYTES.
 */
import { DvsError } from '../ipc/errors.js';
import { MAX_SNAPSHOT_BYTES, type Fields } from '../transport/proc-protocol.js';

export class SnapshotPieces {
  private readonly pieces: Uint8Array[] = [];
  private size = 0;
  /** Whether any answer carried `data` (an empty bin is an empty state, not a stateless service). */
  private given = false;

  constructor(private readonly maxBytes = MAX_SNAPSHOT_BYTES) {}

  /** Takes the `data` of one answer (absent or nil: no bytes); EDVSBADREQUEST for a non-bin, EDVSMSGSIZE past the limit. */
  add(f: Fields): void {
    const data = f.data;
    if (data === undefined || data === null) return;
    if (!(data instanceof Uint8Array)) throw new DvsError('EDVSBADREQUEST', 'the data of a snapshot answer must be a byte string (msgpack bin)', { details: { field: 'data' } });
    this.given = true;
    this.size += data.byteLength;
    if (this.size > this.maxBytes) throw new DvsError('EDVSMSGSIZE', `a snapshot may hold at most ${this.maxBytes} bytes`, { details: { limit: this.maxBytes } });
    if (data.byteLength > 0) this.pieces.push(data);
  }

  /** The whole state; undefined when the service gave none (stateless). */
  whole(): Uint8Array | undefined {
    if (!this.given) return undefined;
    const [first] = this.pieces;
    if (first === undefined) return new Uint8Array(0);
    return this.pieces.length === 1 ? first : Buffer.concat(this.pieces, this.size);
  }
}
