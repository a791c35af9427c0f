"""The original SCAN's self-label EMA (its `utils/ema.py` arithmetic, written here).

After every optimizer step the shadow of the parameters moves towards the model
(shadow = alpha * shadow + (1 - alpha) * model) and the whole shadow is loaded back into the
model, the buffers as they were when the EMA was made included. The model that trains and is
saved is therefore SGD at lr * (1 - alpha) with BatchNorm statistics pinned to the start's.
torch's AveragedModel (an average kept beside a model trained at the full lr) is another
method: `ema_method: averaged`.
"""
import torch


class ShadowEMA:
    def __init__(self, model, alpha=0.999):
        self.alpha = alpha
        self.shadow = {k: v.clone().detach() for k, v in model.state_dict().items()}
        self.param_keys = [k for k, _ in model.named_parameters()]

    @torch.no_grad()
    def update_parameters(self, model):
        """Move the shadow towards `model` (a DDP wrapper is looked through), then load it."""
        model = getattr(model, 'module', model)
        state = model.state_dict()
        for name in self.param_keys:
            self.shadow[name].copy_(self.alpha * self.shadow[name]
                                    + (1 - self.alpha) * state[name])
        model.load_state_dict(self.shadow, strict=True)
