import torch

from meshgnn.data.normalizer import Normalizer


def test_round_trip_and_standardisation(tmp_path):
    x = torch.randn(1000, 3) * torch.tensor([1e3, 1.0, 1e-3]) + torch.tensor([5e4, -2.0, 1.0])
    x[:, 1] = 7.0  # a constant column must stay finite
    norm = Normalizer.fit({"x": x}, std_floor=1e-6)
    z = norm.normalize("x", x)
    assert torch.isfinite(z).all()
    torch.testing.assert_close(z[:, [0, 2]].mean(0), torch.zeros(2), atol=1e-4, rtol=0)
    torch.testing.assert_close(z[:, [0, 2]].std(0, unbiased=False), torch.ones(2), atol=1e-4, rtol=0)
    torch.testing.assert_close(norm.denormalize("x", z), x, rtol=1e-5, atol=1e-3)

    norm.save(tmp_path / "normalization.json")
    again = Normalizer.load(tmp_path / "normalization.json")
    torch.testing.assert_close(again.normalize("x", x), z)
    from_state = Normalizer.from_state_dict(norm.state_dict())
    torch.testing.assert_close(from_state.normalize("x", x), z)


def test_float64_accumulation_keeps_digits():
    x = torch.full((2_000_000, 1), 1e4, dtype=torch.float32) + torch.arange(2).repeat(1_000_000).view(-1, 1).float()
    norm = Normalizer.fit({"x": x}, std_floor=1e-6)
    assert abs(float(norm.mean["x"][0]) - 10000.5) < 1e-6
    assert abs(float(norm.std["x"][0]) - 0.5) < 1e-6


def test_streaming_moments_equal_one_pass_fit():
    from meshgnn.data.normalizer import Moments

    gen = torch.Generator().manual_seed(0)
    chunks = [torch.randn(n, 3, generator=gen) * 5 + 1e4 for n in (1, 7, 300, 2)]
    moments = Moments()
    for chunk in chunks:
        moments.add({"x": chunk})
    streamed = moments.normalizer(std_floor=1e-6)
    whole = torch.cat(chunks).double()
    torch.testing.assert_close(streamed.mean["x"], whole.mean(0), rtol=1e-12, atol=0)
    torch.testing.assert_close(streamed.std["x"], whole.std(0, unbiased=False), rtol=1e-10, atol=0)
