/**
 * The data layer's public API (REFERENCE_SPEC §1, §2): generators, importers, the chunked video
 * store, dataset views and factories, the registry, PLAICraft latents and `.npy` IO.
 * See docs/data.md.
 */
export { readNpy, readNpyHeader, writeNpy, parseNpy, encodeNpy, npyToFloat32, type NpyArray, type NpyDtype } from './npy.ts';
export { VideoStore, decodeFrames, type FrameBlock, type FrameSource, type FrameWindow, type SplitInfo, type VideoStoreOptions } from './video-store.ts';
export { ContinuousView, ChunkedView, SpacedView, type FrameRange, type WindowDataset } from './views.ts';
export { getEvalDataset, getTestDataset, getTrainDataset, openFrameSource, type EvalConfig, type EvalDatasetOptions } from './datasets.ts';
export { registerDataset, resolveDataset, listDatasets, isStreamingName, type DatasetInfo, type DatasetFamily } from './registry.ts';
export { PlaicraftStore, PlaicraftClipSource, readPlaicraftSessions, type PlaicraftOptions } from './plaicraft.ts';
export { simulateBalls, renderBallFrames, initBalls, BOX_SIZE, BALL_RADIUS, PALETTE, type BallTrajectory } from './balls.ts';
export { generateBalls, type GenerateBallsOptions } from './balls-generate.ts';
export { importZip } from './import-zip.ts';
export { datasetFromVideo } from './from-video.ts';
export { readDatasetConfig, chunkPath, splitDir, type DatasetConfig, type Split, type StoreDtype } from './layout.ts';
export { ensureLocalCopy, envDataRoot, localMirrorPath } from './local-cache.ts';
