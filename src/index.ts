/**
 * flexvid as a library: `import { train, sampleVideo, … } from 'flexvid'`.
 * Every function takes a typed options object; the CLI is a thin layer over these.
 */
export * as engine from './engine/index.ts';
export { Tensor, Generator, tidy, keep, inferenceMode, noGrad, setNumThreads, getNumThreads, cudaAvailable } from './engine/index.ts';
export { Module, AdamW, EMA } from './nn/index.ts';

// data
export { generateBalls, type GenerateBallsOptions } from './data/balls-generate.ts';
export { getTrainDataset, getEvalDataset, getTestDataset, type EvalDatasetOptions } from './data/datasets.ts';
export { resolveDataset, registerDataset, listDatasets, type DatasetInfo } from './data/registry.ts';
export { ContinuousView, ChunkedView, SpacedView, type WindowDataset } from './data/views.ts';
export { VideoStore } from './data/video-store.ts';
export { datasetFromVideo, type FromVideoOptions } from './data/from-video.ts';
export { readNpy, writeNpy } from './data/npy.ts';

// model and diffusion
export { UNetVideoModel, type UNetInputs } from './model/unet.ts';
export { resolveUNetConfig, type UNetConfig } from './model/config.ts';
export { modelCostTable } from './model/flops.ts';
export { GaussianDiffusion, type DiffusionConfig, type ModelFn } from './diffusion/gaussian-diffusion.ts';
export { sampleHeun, sampleDdpm, sampleDdim, sampleWith } from './diffusion/samplers.ts';
export { parseSampler, DEFAULT_SAMPLER } from './diffusion/sampler-args.ts';

// training
export { train, type TrainResult, type TrainHooks } from './training/loop.ts';
export { resolveTrainOptions, TRAIN_FLAGS, type TrainOptions } from './training/options.ts';
export { loadModelCheckpoint, type LoadedModel } from './training/checkpoint.ts';
export { convertReferenceCheckpoint } from './training/convert.ts';
export { ReplaySampler } from './lifelong/replay-sampler.ts';
export * as distributed from './engine/distributed.ts';

// sampling and evaluation
export { sampleVideo, type SampleVideoOptions } from './sampling/pipeline.ts';
export { createSamplingScheme, SCHEME_NAMES } from './sampling/schemes.ts';
export { runSampling, type SampleRunOptions, type EvalRunOptions } from './experiments/sample-run.ts';
export { makeVideo } from './experiments/make-video.ts';
export { runLoss } from './experiments/evaluate-loss.ts';
export { runMinade } from './experiments/minade.ts';
export { collectResults } from './experiments/collect.ts';
export { runDemo } from './experiments/demo.ts';
export { fvdFromFeatures } from './metrics/frechet.ts';
export { kvdFromFeatures } from './metrics/mmd.ts';
export { evaluateBallVideos, trackBalls } from './metrics/ball-tracks.ts';

// media
export { writeGif } from './media/gif.ts';
export { writeMp4 } from './media/mp4.ts';
export { videoFromFloatTCHW, markObserved, composeGrid, videoFrames } from './media/frames.ts';
