"""Thin library behind the skill-neuron compendium.

Modules, one job each:
- `tasks`: the task registry (types, labels, verbalizers, hub ids, local files, adversarial links);
- `formats`, `data`: readers for the real file formats, and train/dev/test splits in canonical form;
- `models`: frozen backbones (masked LM, tied encoder, T5) that compute only the verbalizer logits;
- `families`: one class per model family (encoder MLM, encoder-decoder) holding every rule that differs
  between them: label-word token ids, where the prompt and the readout slot go, which module is the FFN neuron;
- `prompt`: soft-prompt initialisation and safetensors files;
- `tuning`, `evaluation`: resumable prompt tuning, accuracy and macro-F1 on any task;
- `training_loop`, `batching`: the one resumable training loop that prompt and weight tuning share, and
  its batch order (a pure function of seed and step);
- `weight_tuning`: BitFit, bottleneck adapters, LoRA and full tuning, on the same loop;
- `hooks`: context managers that record or perturb FFN activations;
- `skill_neurons`, `analyses`: streamed predictivity, selection, and tidy tables for the book;
- `indicators`, `projector`, `transfer_study`: transferability indicators, the cross-model projector,
  and the transfer-method study (initialisation, PANDA) over a profile's cached prompts;
- `store`: the results cache (tuning runs keyed by configuration and data; tables and neuron scores
  by configuration and code), with read-only reuse of another results folder;
- `profiles`, `experiments`, `chapters`: named profiles, one profile's cached inputs, prompts and
  neuron scores, and the tables behind each book chapter;
- `notebook`, `runner`, `paths`, `progress`, `book_config`: what notebooks share, the papermill
  runner, paths resolved from the repository, progress lines from inside a notebook kernel, and the
  book's configuration (launch buttons once the repository's address is published or `COMPENDIUM_REPO_URL` is set);
- `units`, `sweep`, `peft_io`: one tuning run per command (`python -m lib.units`: idempotent, resumable,
  locked per unit), every unit of a profile in parallel on Ray or Slurm job arrays (`python -m lib.sweep`),
  and prompts to and from PEFT's prompt-tuning format; nothing that computes a cached result imports them;
- `figures`, `explorer_static`: the book's drawn method figure (`python -m lib.figures method ...`) and
  the neuron explorer as a plotly figure with its JavaScript inlined (works in the static HTML);
- `tiny`: the test bed (tiny random backbones of the real classes, synthetic tasks), imported only
  by the tests and the smoke profile.
"""
