"""The transforms of data/augment.py applied to a whole uint8 batch on its device.

Same config keys and, per image, the same distribution of random parameters as the faithful
per-image PIL path: `simclr` and `standard` (RandomResizedCrop, flip, colour jitter in a random
order, grayscale), the strong `ours` (flip, random crop, n ops drawn from STRONG_OPS with a
uniformly random magnitude, Cutout) and the validation transform. Images go in as uint8
N x 3 x H x W and come out normalised float32.

Random parameters are drawn per image on the CPU from torch's global generator (which the
scripts seed each epoch): they are a few numbers per image, and knowing them on the host lets
images be grouped by op without a device synchronisation. Pixels never leave the device.
torchvision's functional ops take one factor per call, so the per-image versions of the colour
ops (a blend with a per-image factor) and of the geometry (one grid_sample with per-image
sampling grids) are written here; torchvision does the rest (equalize, autocontrast, grayscale,
resize, center crop). Nothing here waits for the device: parameters and constants reach it by
non-blocking copies, so augmentation overlaps the previous training step.
"""

import torch
import torch.nn.functional as nnf
import torchvision.transforms.v2.functional as F

from data.augment import SIGN_FLIPPED, STRONG_OPS

RRC_RATIO = (3 / 4, 4 / 3)  # torchvision's default, as the faithful RandomResizedCrop uses


def uniform(n, low, high):
    return low + (high - low) * torch.rand(n)


def to_unit(images):
    """uint8 -> float32 in [0, 1]."""
    return images.float().div_(255)


def apply_to(x, rows, op, *per_image):
    """x[rows] = op(x[rows], *per_image[rows]) in place; `rows` (CPU) select the images an op
    applies to, and their per-image parameters travel to the device with them."""
    if len(rows) == 0:
        return x
    index = rows.to(x.device, non_blocking=True)
    args = [p[rows].to(x.device, non_blocking=True) for p in per_image]
    x[index] = op(x[index], *args).to(x.dtype)
    return x


# ---------------------------------------------------------------- geometry

def resized_crop_params(n, height, width, scale, ratio=RRC_RATIO, tries=10):
    """torchvision's RandomResizedCrop.get_params for n images at once: (top, left, h, w).

    Each image takes its first of `tries` draws that fits, else the same central fallback."""
    area = height * width
    log_ratio = torch.log(torch.tensor(ratio, dtype=torch.float64))
    target_area = area * uniform((n, tries), scale[0], scale[1]).double()
    aspect = torch.exp(uniform((n, tries), log_ratio[0], log_ratio[1]).double())
    w = torch.sqrt(target_area * aspect).round().long()
    h = torch.sqrt(target_area / aspect).round().long()
    fits = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = fits.long().argmax(dim=1, keepdim=True)  # 0 where none fits; masked below
    w, h, found = w.gather(1, first)[:, 0], h.gather(1, first)[:, 0], fits.any(dim=1)
    top = (torch.rand(n) * (height - h + 1)).long()
    left = (torch.rand(n) * (width - w + 1)).long()
    fb_top, fb_left, fb_h, fb_w = _central_crop(height, width, ratio)
    return (torch.where(found, top, fb_top), torch.where(found, left, fb_left),
            torch.where(found, h, fb_h), torch.where(found, w, fb_w))


def _central_crop(height, width, ratio):
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        w, h = int(round(height * max(ratio))), height
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def _crop_axis(start, length, out, full):
    """Sampling positions (grid_sample's normalised coordinates) of `out` output pixels over the
    crop [start, start + length) of an axis of `full` pixels, as PIL's bilinear resize of the
    cropped image: pixel centres scaled, and clamped to the crop's own border pixels."""
    start, length = start.double()[:, None], length.double()[:, None]
    centres = torch.arange(out, dtype=torch.float64) + 0.5
    pos = (start + centres * length / out - 0.5).clamp(min=start, max=start + length - 1)
    return ((pos + 0.5) * 2 / full - 1).float()


def resized_crop(images, top, left, h, w, size, flip=None):
    """Crop each image to its box and resize it to size x size (bilinear), flipping the images
    where `flip` is true; uint8 in, float in [0, 1] out. Upscaling matches PIL; a box larger than
    the output is not antialiased (it never is when the output is the image size)."""
    n, _, height, width = images.shape
    xs = _crop_axis(left, w, size, width)
    ys = _crop_axis(top, h, size, height)
    if flip is not None:
        xs = torch.where(flip[:, None], xs.flip(1), xs)
    xs, ys = (t.to(images.device, non_blocking=True) for t in (xs, ys))
    grid = torch.stack([xs[:, None, :].expand(n, size, size), ys[:, :, None].expand(n, size, size)],
                       dim=3)
    return nnf.grid_sample(to_unit(images), grid, mode='bilinear', padding_mode='border',
                           align_corners=False)


def random_crop(images, size):
    """T.RandomCrop(size, pad_if_needed=True) per image: pad with zeros as torchvision does, then
    a uniformly placed size x size window."""
    height, width = images.shape[-2:]
    if width < size:
        images = F.pad(images, [size - width, 0])
    if height < size:
        images = F.pad(images, [0, size - height])
    n, _, height, width = images.shape
    if (height, width) == (size, size):
        return images
    top = torch.randint(0, height - size + 1, (n,))
    left = torch.randint(0, width - size + 1, (n,))
    rows = (top[:, None] + torch.arange(size)).to(images.device, non_blocking=True)
    cols = (left[:, None] + torch.arange(size)).to(images.device, non_blocking=True)
    batch = torch.arange(n, device=images.device)[:, None, None]
    return images[batch, :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2).contiguous()


def random_flip(images, p=0.5):
    flip = (torch.rand(len(images)) < p).to(images.device, non_blocking=True)
    return torch.where(flip.view(-1, 1, 1, 1), images.flip(-1), images)


def affine_theta(inverse, height, width):
    """Inverse maps in pixel coordinates (N x 3 x 3, pixel edges at integers: PIL's convention)
    -> affine_grid's N x 2 x 3 matrices in normalised coordinates (u = 2 x / size - 1)."""
    to_norm = torch.tensor([[2 / width, 0, -1], [0, 2 / height, -1], [0, 0, 1]],
                           dtype=inverse.dtype)
    return (to_norm @ inverse @ torch.linalg.inv(to_norm))[:, :2].float()


def affine_nearest(images, theta):
    """Warp uint8 images by per-image affine_grid matrices with nearest sampling and zero fill,
    as PIL's rotate and affine do for TF.rotate / TF.affine."""
    n, _, height, width = images.shape
    grid = nnf.affine_grid(theta, [n, 3, height, width], align_corners=False)
    warped = nnf.grid_sample(images.float(), grid, mode='nearest', padding_mode='zeros',
                             align_corners=False)
    return warped.round_().to(torch.uint8)


def inverse_maps(ids, magnitudes, height, width):
    """Per-image inverse maps of the geometric STRONG_OPS (`ids` index STRONG_OPS) as the
    faithful ops give them to PIL: rotation (counter-clockwise, degrees) about (W/2, H/2);
    shear about the top-left corner, (1, v, 0, 0, 1, 0) and (1, 0, 0, v, 1, 0); translation by
    v * W or v * H pixels, unrounded; float64 N x 3 x 3 on the CPU."""
    def where(name, value):
        return torch.where(ids == STRONG_NAMES.index(name), value, torch.zeros_like(value))
    v = magnitudes.double()
    cx, cy = width / 2, height / 2
    angle = where('rotate', torch.deg2rad(v))
    c, s = torch.cos(angle), torch.sin(angle)
    m = torch.zeros(len(ids), 3, 3, dtype=torch.float64)
    m[:, 0, 0], m[:, 0, 1] = c, -s + where('shear_x', v)
    m[:, 1, 0], m[:, 1, 1] = s + where('shear_y', v), c
    m[:, 0, 2] = cx - c * cx + s * cy + where('translate_x', v * width)
    m[:, 1, 2] = cy - s * cx - c * cy + where('translate_y', v * height)
    m[:, 2, 2] = 1
    return m


# ---------------------------------------------------------------- colour, float in [0, 1]

def blend(images, degenerate, factor, bound=1.0):
    """PIL's Image.blend(degenerate, image, factor) with one factor per image."""
    factor = factor.view(-1, 1, 1, 1)
    return (degenerate + factor * (images - degenerate)).clamp_(0, bound)


def grayscale(images):
    return F.rgb_to_grayscale(images, num_output_channels=1)


def adjust_brightness(images, factor):
    return blend(images, torch.zeros_like(images), factor)


def adjust_contrast(images, factor):
    return blend(images, grayscale(images).mean(dim=(1, 2, 3), keepdim=True), factor)


def adjust_saturation(images, factor):
    return blend(images, grayscale(images), factor)


def adjust_hue(images, shift):
    """Rotate the HSV hue of each image by its `shift` (a fraction of a turn)."""
    maxc, argmax = images.max(dim=1)
    delta = maxc - images.min(dim=1).values
    r, g, b = images.unbind(1)
    d = delta.clamp_min(1e-12)  # where delta is 0 the saturation is 0 and the hue is unused
    hue = torch.where(argmax == 0, (g - b) / d,
                      torch.where(argmax == 1, 2 + (b - r) / d, 4 + (r - g) / d))
    hue = (hue / 6 + shift.view(-1, 1, 1)).remainder(1.0)
    chroma = delta.unsqueeze(1)  # = value * saturation
    # HSV -> RGB: channel n in (R, G, B) = (5, 3, 1): V - C * clamp(min(k, 4 - k), 0, 1).
    k = (torch.arange(5.0, 0.0, -2.0, device=images.device).view(1, 3, 1, 1)
         + 6 * hue.unsqueeze(1)).remainder(6)
    return maxc.unsqueeze(1) - chroma * torch.minimum(k, 4 - k).clamp(0, 1)


def color_jitter(images, brightness, contrast, saturation, hue, p=1.0):
    """T.RandomApply([T.ColorJitter(...)], p) per image: the four ops in a random order per
    image, each factor uniform in torchvision's range; ops with an empty range are skipped."""
    n = len(images)
    ops = [(adjust_brightness, _factor_range(brightness)),
           (adjust_contrast, _factor_range(contrast)),
           (adjust_saturation, _factor_range(saturation)),
           (adjust_hue, (-hue, hue) if hue else None)]
    applied = torch.rand(n) < p
    order = torch.rand(n, len(ops)).argsort(dim=1)
    factors = [uniform(n, *r) if r else None for _, r in ops]
    for position in range(len(ops)):
        for j, (op, _) in enumerate(ops):
            if factors[j] is not None:
                rows = torch.nonzero(applied & (order[:, position] == j))[:, 0]
                images = apply_to(images, rows, op, factors[j])
    return images


def _factor_range(value):
    """torchvision's ColorJitter range for a brightness/contrast/saturation value."""
    return (max(0.0, 1 - value), 1 + value) if value else None


def random_grayscale(images, p):
    rows = torch.nonzero(torch.rand(len(images)) < p)[:, 0]
    return apply_to(images, rows, lambda x: F.rgb_to_grayscale(x, num_output_channels=3))


# ---------------------------------------------------------------- strong ops, uint8 like PIL

def _blend_uint8(images, degenerate, factor):
    """Blend in PIL's 8-bit arithmetic: float blend, clipped, truncated."""
    return blend(images.float(), degenerate, factor, bound=255.0).floor_().to(torch.uint8)


def _gray_uint8(images):
    """PIL's convert('L'): the rounded luma of 8-bit RGB."""
    return grayscale(images.float()).round_()


def strong_color(images, v):
    return _blend_uint8(images, _gray_uint8(images), v)


def strong_contrast(images, v):
    mean = (_gray_uint8(images).mean(dim=(1, 2, 3), keepdim=True) + 0.5).floor_()
    return _blend_uint8(images, mean, v)


def strong_brightness(images, v):
    return _blend_uint8(images, torch.zeros_like(images, dtype=torch.float32), v)


SMOOTH = torch.tensor([[1.0, 1.0, 1.0], [1.0, 5.0, 1.0], [1.0, 1.0, 1.0]]) / 13


def strong_sharpness(images, v):
    """The degenerate image is PIL's SMOOTH filter, rounded, border pixels kept (torchvision's
    adjust_sharpness builds its kernel with a blocking copy to the device, so not used here)."""
    x = images.float()
    smooth = x.clone()
    kernel = SMOOTH.to(x.device, non_blocking=True).expand(3, 1, 3, 3)
    smooth[..., 1:-1, 1:-1] = nnf.conv2d(x, kernel, groups=3).round_()
    return _blend_uint8(images, smooth, v)


def strong_solarize(images, v):
    return torch.where(images >= v.view(-1, 1, 1, 1), 255 - images, images)


def strong_posterize(images, v):
    bits = v.long().clamp(1, 8)
    mask = ((255 << (8 - bits)) & 255).to(torch.uint8)
    return images & mask.view(-1, 1, 1, 1)


GEOMETRIC_OPS = ('rotate', 'shear_x', 'shear_y', 'translate_x', 'translate_y')
PIXEL_OPS = {
    'autocontrast': lambda x, v: F.autocontrast(x),
    'equalize': lambda x, v: F.equalize(x),
    'solarize': strong_solarize,
    'color': strong_color,
    'contrast': strong_contrast,
    'brightness': strong_brightness,
    'sharpness': strong_sharpness,
    'posterize': strong_posterize,
}
STRONG_NAMES = [name for name, *_ in STRONG_OPS]


def draw_strong_ops(n, num_ops):
    """RandomStrongOps' choices for n images: op ids (n x num_ops, indices into STRONG_OPS,
    drawn with replacement) and a uniformly random magnitude in each op's range, its sign
    flipped with probability 0.5 for the SIGN_FLIPPED ops."""
    ids = torch.randint(len(STRONG_OPS), (n, num_ops))
    low = torch.tensor([op[2] for op in STRONG_OPS], dtype=torch.float64)[ids]
    high = torch.tensor([op[3] for op in STRONG_OPS], dtype=torch.float64)[ids]
    magnitudes = low + (high - low) * torch.rand(n, num_ops, dtype=torch.float64)
    flipped = torch.tensor([name in SIGN_FLIPPED for name in STRONG_NAMES])[ids]
    flip = flipped & (torch.rand(n, num_ops) < 0.5)
    return ids, torch.where(flip, -magnitudes, magnitudes)


def apply_strong_op(images, ids, magnitudes):
    """One op per image (ids and magnitudes: one per image): each pixel op on its group of
    images, the geometric ones together as one warp."""
    for name, fn in PIXEL_OPS.items():
        rows = torch.nonzero(ids == STRONG_NAMES.index(name))[:, 0]
        images = apply_to(images, rows, fn, magnitudes.float())
    geometric = torch.tensor([STRONG_NAMES.index(name) for name in GEOMETRIC_OPS])
    rows = torch.nonzero(torch.isin(ids, geometric))[:, 0]
    theta = affine_theta(inverse_maps(ids, magnitudes, *images.shape[-2:]), *images.shape[-2:])
    return apply_to(images, rows, affine_nearest, theta)


def cutout(images, n_holes, length, random=True):
    """data/augment.py's Cutout per image on a normalised batch: a length drawn from 1..length
    per image (`random` not read, as there), squares [c - length//2, c + length//2) around
    uniform centres, clipped at the borders, set to zero."""
    n, _, height, width = images.shape
    keep = torch.ones(n, 1, height, width, dtype=torch.bool, device=images.device)
    ys = torch.arange(height, device=images.device).view(1, height, 1)
    xs = torch.arange(width, device=images.device).view(1, 1, width)
    half = torch.randint(1, length + 1, (n,)) // 2
    for _ in range(n_holes):
        cy, cx = torch.randint(height, (n,)), torch.randint(width, (n,))
        y1, y2 = (cy - half).clamp(min=0), (cy + half).clamp(max=height)
        x1, x2 = (cx - half).clamp(min=0), (cx + half).clamp(max=width)
        box = [t.to(images.device, non_blocking=True).view(n, 1, 1) for t in (y1, y2, x1, x2)]
        hole = (ys >= box[0]) & (ys < box[1]) & (xs >= box[2]) & (xs < box[3])
        keep &= ~hole.unsqueeze(1)
    return images * keep


# ---------------------------------------------------------------- the pipelines

def normalize(images, kw):
    """F.normalize, with mean and std sent to the device without a blocking copy."""
    mean, std = (torch.tensor(v, dtype=torch.float32).view(1, -1, 1, 1).to(
        images.device, non_blocking=True) for v in (kw.mean, kw.std))
    return (images - mean) / std


class CropJitterAugment:
    """`simclr` (with colour) and `standard` (without): RandomResizedCrop, flip, then colour
    jitter with probability p and random grayscale."""

    def __init__(self, kw, size, with_color):
        self.kw, self.size, self.with_color = kw, size, with_color

    def __call__(self, images):
        kw, n, (height, width) = self.kw, len(images), images.shape[-2:]
        box = resized_crop_params(n, height, width, kw.random_resized_crop.scale)
        flip = torch.rand(n) < 0.5 if kw.horizontal_flip else None
        x = resized_crop(images, *box, self.size, flip)
        if self.with_color:
            cj = kw.color_jitter
            x = color_jitter(x, cj.brightness, cj.contrast, cj.saturation, cj.hue,
                             kw.color_jitter_random_apply.p)
            x = random_grayscale(x, kw.random_grayscale.p)
        return normalize(x, kw.normalize)


class StrongAugment:
    """`ours`: (resize), flip, random crop, `num_strong_augs` ops from STRONG_OPS, normalize,
    Cutout; the ops work on uint8 images as the PIL ones do."""

    def __init__(self, kw, size):
        self.kw, self.size = kw, size

    def __call__(self, images):
        kw = self.kw
        x = F.resize(images, [kw.resize], antialias=True) if kw.resize else images
        x = random_flip(x) if kw.horizontal_flip else x
        x = random_crop(x, self.size).clone()  # the ops below write into x
        ids, magnitudes = draw_strong_ops(len(x), kw.num_strong_augs)
        for k in range(kw.num_strong_augs):
            x = apply_strong_op(x, ids[:, k], magnitudes[:, k])
        ck = kw.cutout_kwargs
        return cutout(normalize(to_unit(x), kw.normalize), ck.n_holes, ck.length, ck.random)


class ValTransform:
    """(resize), center crop, normalize."""

    def __init__(self, kw):
        self.kw = kw

    def __call__(self, images):
        x = F.resize(images, [self.kw.resize], antialias=True) if self.kw.resize else images
        x = F.center_crop(x, [self.kw.crop_size, self.kw.crop_size])
        return normalize(to_unit(x), self.kw.normalize)


def build_batched_augmentation(cfg, strategy=None):
    """The batched twin of data.augment.build_augmentation."""
    kw = cfg.augmentation_kwargs
    strategy = strategy or cfg.augmentation_strategy
    crop = kw.crop_size or cfg.transformation_kwargs.crop_size
    if strategy in ('standard', 'simclr'):
        return CropJitterAugment(kw, kw.random_resized_crop.size or crop, strategy == 'simclr')
    if strategy == 'ours':
        return StrongAugment(kw, crop)
    raise ValueError(f"unknown augmentation strategy '{strategy}'")


def build_batched_val_transform(cfg):
    return ValTransform(cfg.transformation_kwargs)
