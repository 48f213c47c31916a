/**
 * Evaluated before any other CLI module (first import of main.ts): settings that libtorch reads
 * when it loads. `--threads N` becomes FLEXVID_THREADS so the thread count is fixed before
 * libtorch starts (changing it later slows OpenBLAS; see src/engine/native.ts).
 */
const argv = process.argv;
for (let i = 0; i < argv.length; i++) {
  const a = argv[i]!;
  const v = a === '--threads' ? argv[i + 1] : a.startsWith('--threads=') ? a.slice('--threads='.length) : undefined;
  if (v !== undefined && /^\d+$/.test(v) && Number(v) > 0) process.env.FLEXVID_THREADS = v;
}
export {};
