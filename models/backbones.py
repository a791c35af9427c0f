"""Backbones: each returns {'backbone': module mapping images to feature vectors, 'dim': int}.

ResNet-18 with the CIFAR stem (3x3 conv, stride 1, no max-pool) for 32x32 images and the STL
stem (3x3 conv, stride 1, then the original's MaxPool2d(2, 2, padding=1): 96 -> 49, stages at
49, 25, 13, 7) for 96x96 images, torchvision's ResNet-50 for ImageNet, and a small VGG-style
network for tiny images (the digits) where a ResNet-18 would be wasted compute on two CPU cores.
The ResNet-18s are torchvision's blocks, which compute what the original's do; only their
parameter names differ (`downsample` where it says `shortcut`: models/original.py converts).
"""
import torch.nn as nn
import torchvision

from utils.config import is_timm_backbone

BACKBONES = ('small', 'resnet18_cifar', 'resnet18_stl', 'resnet50')


def _resnet18(maxpool):
    net = torchvision.models.resnet18(weights=None)
    # torchvision initialises its own layers as the original does (kaiming-normal fan_out convs,
    # BatchNorm 1 and 0); the replaced stem conv gets the same.
    net.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
    nn.init.kaiming_normal_(net.conv1.weight, mode='fan_out', nonlinearity='relu')
    net.maxpool = maxpool
    # torchvision's AdaptiveAvgPool2d(1) is the original STL AvgPool2d(7) on its 7x7 map, and
    # still one vector per image at other input sizes (folders).
    net.fc = nn.Identity()
    return {'backbone': net, 'dim': 512}


def resnet18_cifar():
    return _resnet18(nn.Identity())


def resnet18_stl():
    return _resnet18(nn.MaxPool2d(kernel_size=2, stride=2, padding=1))


def resnet50():
    net = torchvision.models.resnet50(weights=None)
    net.fc = nn.Identity()
    return {'backbone': net, 'dim': 2048}


def _conv_block(cin, cout):
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True)]


def small(width=32):
    w = width
    net = nn.Sequential(
        *_conv_block(3, w), *_conv_block(w, w), nn.MaxPool2d(2),
        *_conv_block(w, 2 * w), *_conv_block(2 * w, 2 * w), nn.MaxPool2d(2),
        *_conv_block(2 * w, 4 * w), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    return {'backbone': net, 'dim': 4 * w}


def build_backbone(name):
    if is_timm_backbone(name):  # random weights here: pretrained ones are loaded by step 1
        from models.timm_backbone import timm_backbone
        return timm_backbone(name)
    builders = {'small': small, 'resnet18_cifar': resnet18_cifar, 'resnet18_stl': resnet18_stl,
                'resnet50': resnet50}
    if name not in builders:
        raise ValueError(f"unknown backbone '{name}', expected one of {list(builders)}")
    return builders[name]()
