#!/usr/bin/python3
"""Train the default model (a small CNN) on Debian's Fashion-MNIST and save it
as TorchScript in models/fashion_mnist/model.pt. Prints test-set accuracy.

Usage: /usr/bin/python3 models/train_fashion_mnist.py [--epochs N] [--out DIR]
"""
import argparse
import os
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

import fashion_mnist_data as data


class SmallCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.fc1 = nn.Linear(32 * 7 * 7, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(x))
        return self.fc2(x)


def accuracy(model, x, y):
    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(x), 1000):
            pred = model(torch.from_numpy(x[i:i + 1000])).argmax(1).numpy()
            correct += int((pred == y[i:i + 1000]).sum())
    return correct / len(x)


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--out", default=os.path.join(here, "fashion_mnist"))
    args = ap.parse_args()

    torch.manual_seed(0)
    np.random.seed(0)
    torch.set_num_threads(os.cpu_count() or 1)
    xtr, ytr = data.load("train")
    xte, yte = data.load("test")
    model = SmallCNN()
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    start = time.time()
    for epoch in range(args.epochs):
        model.train()
        perm = np.random.permutation(len(xtr))
        for i in range(0, len(xtr), 128):
            idx = perm[i:i + 128]
            xb, yb = torch.from_numpy(xtr[idx]), torch.from_numpy(ytr[idx])
            opt.zero_grad()
            loss = F.cross_entropy(model(xb), yb)
            loss.backward()
            opt.step()
        print(f"epoch {epoch + 1}: loss {loss.item():.4f} "
              f"test accuracy {accuracy(model, xte, yte):.4f} "
              f"({time.time() - start:.0f} s)", flush=True)
    model.eval()
    scripted = torch.jit.script(model)
    os.makedirs(args.out, exist_ok=True)
    scripted.save(os.path.join(args.out, "model.pt"))
    print(f"test accuracy: {accuracy(model, xte, yte):.4f}")
    print(f"saved {os.path.join(args.out, 'model.pt')} in {time.time() - start:.0f} s")


if __name__ == "__main__":
    main()
