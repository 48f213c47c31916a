/**
 * Import a dataset zip (REFERENCE_SPEC §1.4 `zip_dataset.py` output; the Windows-maze
 * screensaver dataset is distributed this way, §1.2) into a flexvid dataset folder.
 *
 * Member names start with `<dataset>/…`. The zip is streamed (members may be GBs), each member is
 * written to a temporary name and renamed, and the result is validated with the video store.
 *
 * Fixes applied (corrected, §10.1 item 8 / §1.2 proposal):
 * - chunks stored as `<split>/<k>.npy` (the converter's layout, no seed level) go to
 *   `<split>/0/<k>.npy`, the layout the reader expects;
 * - `T_total` is set to the frames actually present (the converter counted a dropped tail), and
 *   `T_total_test` records the test stream's length when it differs; the original value is kept
 *   as `T_total_reference`;
 * - `.mp4` members are skipped (as `zip_dataset.py` does for the maze).
 * PLAICraft zips (`global_database.db` + session folders) are extracted as they are.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Unzip, UnzipInflate, type UnzipFile } from 'fflate';
import { FileFormatError, OptionError } from '../util/errors.ts';
import { tempSibling, writeJsonAtomic } from '../util/fs-atomic.ts';
import { configPath, readDatasetConfig, SPLITS, type DatasetConfig } from './layout.ts';
import { VideoStore } from './video-store.ts';

/** Options of {@link importZip}. */
export interface ImportZipOptions {
  /** Called with bytes of the zip consumed so far. */
  onProgress?: (bytesRead: number, bytesTotal: number) => void;
}

/** What {@link importZip} did. */
export interface ImportZipReport {
  out: string;
  /** Files written. */
  files: number;
  /** Members skipped (`.mp4`, directories). */
  skipped: number;
  /** True when the flat `<split>/<k>.npy` layout was moved under `<split>/0/`. */
  movedToSeedFolder: boolean;
  /** Fields of config.json that were corrected: `field: old → new`. */
  configFixes: string[];
  kind: 'npy' | 'plaicraft';
}

/** Where a member (path below the dataset folder) goes, or null to skip it. */
function targetOf(rel: string): { rel: string; flat: boolean } | null {
  if (rel === '' || rel.endsWith('/') || /\.mp4$/i.test(rel)) return null;
  const parts = rel.split('/');
  if (parts.some((p) => p === '..' || p === '.')) throw new Error(`unsafe member path ${rel}`);
  if (parts.length === 2 && SPLITS.includes(parts[0] as never) && /^\d+\.npy$/.test(parts[1]!)) {
    return { rel: `${parts[0]}/0/${parts[1]}`, flat: true };
  }
  return { rel, flat: false };
}

/**
 * Extract `zipFile` into `out` (which must not hold a dataset yet), fix the reference layout
 * quirks and validate the result. Errors: FileFormatError naming the zip or the bad file.
 */
export function importZip(zipFile: string, out: string, opts: ImportZipOptions = {}): ImportZipReport {
  if (!fs.existsSync(zipFile)) throw new OptionError('ZIP', 'an existing zip file', zipFile);
  if (fs.existsSync(configPath(out)) || fs.existsSync(path.join(out, 'global_database.db'))) {
    throw new OptionError('--out', 'a folder that does not hold a dataset yet', out);
  }
  fs.mkdirSync(out, { recursive: true });
  const report: ImportZipReport = { out, files: 0, skipped: 0, movedToSeedFolder: false, configFixes: [], kind: 'npy' };
  let prefix: string | null = null;
  let failure: Error | null = null;
  const pending = new Map<UnzipFile, { fd: number; tmp: string; dest: string }>();

  const unzip = new Unzip((file) => {
    if (failure) return;
    try {
      // The common top-level folder (`<dataset>/`) is stripped; zips made from inside the folder work too.
      if (prefix === null) {
        const slash = file.name.indexOf('/');
        const top = slash > 0 ? file.name.slice(0, slash + 1) : '';
        prefix = top !== '' && !['train/', 'test/'].includes(top) ? top : '';
      }
      if (!file.name.startsWith(prefix)) throw new FileFormatError(zipFile, `member ${file.name} is outside the dataset folder ${prefix}`);
      const target = targetOf(file.name.slice(prefix.length));
      if (target === null) {
        report.skipped++;
        file.ondata = () => {};
        if (!file.name.endsWith('/')) file.start();
        return;
      }
      if (target.flat) report.movedToSeedFolder = true;
      if (target.rel === 'global_database.db') report.kind = 'plaicraft';
      const dest = path.join(out, ...target.rel.split('/'));
      fs.mkdirSync(path.dirname(dest), { recursive: true });
      const tmp = tempSibling(dest);
      const fd = fs.openSync(tmp, 'w');
      pending.set(file, { fd, tmp, dest });
      file.ondata = (err, chunk, final) => {
        if (failure) return;
        try {
          if (err) throw new FileFormatError(zipFile, `corrupt member ${file.name} (${err.message})`);
          if (chunk.length) fs.writeSync(fd, chunk);
          if (final) {
            fs.fsyncSync(fd);
            fs.closeSync(fd);
            fs.renameSync(tmp, dest);
            pending.delete(file);
            report.files++;
          }
        } catch (e) {
          failure = e as Error;
        }
      };
      file.start();
    } catch (e) {
      failure = e as Error;
    }
  });
  unzip.register(UnzipInflate);

  const total = fs.statSync(zipFile).size;
  const fd = fs.openSync(zipFile, 'r');
  const buf = Buffer.allocUnsafe(4 << 20);
  let pos = 0;
  try {
    for (;;) {
      const n = fs.readSync(fd, buf, 0, buf.length, pos);
      pos += n;
      try {
        unzip.push(new Uint8Array(buf.subarray(0, n)), n === 0);
      } catch (e) {
        throw new FileFormatError(zipFile, `not a valid zip archive (${(e as Error).message})`);
      }
      if (failure) throw failure;
      opts.onProgress?.(pos, total);
      if (n === 0) break;
    }
  } finally {
    fs.closeSync(fd);
    for (const { fd: f, tmp } of pending.values()) {
      fs.closeSync(f);
      fs.rmSync(tmp, { force: true });
    }
  }
  if (pending.size > 0) throw new FileFormatError(zipFile, 'truncated zip archive (a member ends early)');
  if (report.files === 0) throw new FileFormatError(zipFile, 'the archive holds no dataset files');

  if (report.kind === 'plaicraft') return report;
  fixConfig(out, report);
  // Validate everything: config vs chunk files, headers, sizes.
  VideoStore.open(out, { dataRoot: null }).validate(SPLITS.filter((s) => fs.existsSync(path.join(out, s))));
  return report;
}

/** Count `0.npy … (n−1).npy` in `<out>/<split>/0`. */
function countChunks(dir: string): number {
  if (!fs.existsSync(dir)) return 0;
  const names = new Set(fs.readdirSync(dir));
  let n = 0;
  while (names.has(`${n}.npy`)) n++;
  return n;
}

/** Make config.json agree with the chunks present (reference converter layout only). */
function fixConfig(out: string, report: ImportZipReport): void {
  const file = configPath(out);
  if (!fs.existsSync(file)) throw new FileFormatError(file, 'the archive has no config.json for the dataset');
  const raw = JSON.parse(fs.readFileSync(file, 'utf8')) as DatasetConfig;
  const K = raw.chunk_size;
  if (!Number.isSafeInteger(K) || K <= 0) throw new FileFormatError(file, `expected a positive integer chunk_size but found ${JSON.stringify(K)}`);
  if (!report.movedToSeedFolder) {
    readDatasetConfig(out); // standard layout: config must already be right
    return;
  }
  const trainFrames = countChunks(path.join(out, 'train', '0')) * K;
  const testFrames = countChunks(path.join(out, 'test', '0')) * K;
  if (trainFrames === 0) throw new FileFormatError(path.join(out, 'train', '0'), 'no train chunks in the archive');
  const fixed: DatasetConfig = { ...raw };
  if (raw.T_total !== trainFrames) {
    report.configFixes.push(`T_total: ${raw.T_total} → ${trainFrames}`);
    fixed.T_total_reference = raw.T_total;
    fixed.T_total = trainFrames;
  }
  if (testFrames > 0 && testFrames !== fixed.T_total) {
    report.configFixes.push(`T_total_test: ${testFrames}`);
    fixed.T_total_test = testFrames;
  }
  if (report.configFixes.length) writeJsonAtomic(file, fixed);
  readDatasetConfig(out);
}
