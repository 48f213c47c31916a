/**
 * `flexvid model info` (size and cost of a model configuration) and `flexvid convert`
 * (reference PyTorch checkpoints → flexvid safetensors).
 */
import * as path from 'node:path';
import type { Command } from 'commander';
import { frameTailGflopPerFrame, modelCostTable } from '../model/flops.ts';
import { resolveUNetConfig } from '../model/config.ts';
import { convertReferenceCheckpoint } from '../training/convert.ts';
import { loadModelCheckpoint } from '../training/checkpoint.ts';
import { OptionError } from '../util/errors.ts';

function int(name: string) {
  return (v: string) => {
    const n = Number(v);
    if (!Number.isInteger(n)) throw new OptionError(name, 'an integer', v);
    return n;
  };
}

export function register(program: Command): void {
  const model = program.command('model').description('Inspect model configurations.');
  model
    .command('info')
    .description('Parameter count, per-block table and forward GFLOP per frame of a U-Net configuration.')
    .option('--image-size <n>', 'frame side (32, 64, 128, 160, 256)', int('--image-size'), 32)
    .option('--in-channels <n>', 'channels per frame (3 pixels, 4 latents)', int('--in-channels'), 3)
    .option('--num-channels <n>', 'base width', int('--num-channels'), 128)
    .option('--num-res-blocks <n>', 'ResBlocks per level', int('--num-res-blocks'), 2)
    .option('--num-heads <n>', 'attention heads', int('--num-heads'), 4)
    .option('--attention-resolutions <list>', 'feature-map sides with attention', '16,8')
    .option('--T <n>', 'frames per window (attention cost)', int('--T'), 10)
    .option('--checkpoint <file>', 'describe the model of a checkpoint instead')
    .option('--json', 'print JSON')
    .action((o) => {
      let cfg = {
        imageSize: o.imageSize,
        inChannels: o.inChannels,
        modelChannels: o.numChannels,
        numResBlocks: o.numResBlocks,
        numHeads: o.numHeads,
        attentionResolutions: o.attentionResolutions,
      };
      if (o.checkpoint) {
        const loaded = loadModelCheckpoint(o.checkpoint);
        cfg = loaded.model.config as typeof cfg;
        loaded.model.dispose();
      }
      const table = modelCostTable(resolveUNetConfig(cfg), o.T);
      const params = table.reduce((s, b) => s + b.params, 0);
      const gflop = table.reduce((s, b) => s + b.flopsPerFrame, 0) / 1e9;
      const tail = frameTailGflopPerFrame(resolveUNetConfig(cfg), o.T);
      if (o.json) {
        process.stdout.write(JSON.stringify({ config: resolveUNetConfig(cfg), parameters: params, forwardGflopPerFrame: gflop, frameTailGflopPerFrame: tail, blocks: table }, null, 2) + '\n');
        return;
      }
      const lines = [`${'block'.padEnd(18)} ${'kind'.padEnd(14)} ${'size'.padStart(5)} ${'ch'.padStart(5)} ${'params'.padStart(12)} ${'GFLOP/frame'.padStart(12)}`];
      for (const b of table) {
        lines.push(`${b.name.padEnd(18)} ${b.kind.padEnd(14)} ${String(b.size || '').padStart(5)} ${String(b.channels).padStart(5)} ${b.params.toLocaleString('en-US').padStart(12)} ${(b.flopsPerFrame / 1e9).toFixed(3).padStart(12)}`);
      }
      lines.push(`total parameters: ${params.toLocaleString('en-US')} (${(params / 1e6).toFixed(2)}M)`);
      lines.push(`forward: ${gflop.toFixed(2)} GFLOP per frame (windows of T=${o.T}); a training step costs about 3× the forward`);
      if (tail > 0) {
        lines.push(
          `after the last temporal attention: ${tail.toFixed(2)} GFLOP per frame (${((100 * tail) / gflop).toFixed(0)} %), run only for frames whose output is read (latent frames while sampling, loss frames in training)`,
        );
      }
      process.stdout.write(lines.join('\n') + '\n');
    });

  program
    .command('convert')
    .description('Convert a reference PyTorch checkpoint (model*.pt / ema_*.pt) to a flexvid safetensors checkpoint.')
    .argument('<checkpoint.pt>', 'reference checkpoint (a torch.save zip with state_dict, config, step)')
    .option('--out <file>', 'output file (default: same name with .safetensors)')
    .action((file: string, o: { out?: string }) => {
      const out = o.out ?? path.join(path.dirname(file), path.basename(file).replace(/\.pt$/, '') + '.safetensors');
      const r = convertReferenceCheckpoint(file, out);
      process.stdout.write(
        `wrote ${out}: ${r.tensors} tensors, step ${r.meta.step}, dataset ${r.meta.config.dataset || '(none)'}, ` +
          `model ${r.meta.config.model.imageSize}² ch ${r.meta.config.model.modelChannels} × ${r.meta.config.model.numResBlocks} res-blocks\n` +
          (r.ignored.length ? `ignored config keys (no effect in flexvid): ${r.ignored.join(', ')}\n` : ''),
      );
    });
}
