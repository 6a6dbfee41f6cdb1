/**
 * How far the detection engine processed the security event stream, kept in the database: the seq of
 * the last event it processed. Whoever runs the engine next (another replica taking the leader lease,
 * or this server after a restart) fills its windows from the events up to that seq and processes the
 * events after it, which no engine has seen.
 *
 * Saving only moves forward: a leader that was deposed and saves late never takes the mark back.
 */
import { nowIso, type Db } from '../store/database.js';

const NAME = 'engine';

export class DetectionProgress {
  constructor(private readonly db: Db) {}

  /** The seq of the last event processed, or null if no engine ever saved one. */
  async load(): Promise<number | null> {
    const row = await this.db
      .selectFrom('detectionProgress')
      .select('seq')
      .where('name', '=', NAME)
      .executeTakeFirst();
    return row === undefined ? null : Number(row.seq);
  }

  /** Records `seq` as processed, unless a later seq was recorded already. */
  async save(seq: number): Promise<void> {
    if (!Number.isSafeInteger(seq) || seq < 0) throw new RangeError(`invalid event seq: ${seq}`);
    const updatedAt = nowIso();
    await this.db
      .insertInto('detectionProgress')
      .values({ name: NAME, seq, updatedAt })
      .onConflict((oc) =>
        oc.column('name').doUpdateSet({ seq, updatedAt }).where('detectionProgress.seq', '<', seq),
      )
      .execute();
  }
}
