"""MultiHeadAttention against an independent NumPy reference; masking semantics."""
import mxnet as mx
import numpy as np
import pytest

from emotion_mx.models import MaskedPool, MultiHeadAttention, TransformerStack

B, TQ, TK, C, H = 3, 4, 5, 8, 2


def _np_mha(q, k, v, mask, w, heads):
    """Scaled dot-product multi-head attention, written from the paper's equations."""
    def dense(x, name):
        return x @ w[name + "weight"].T + w[name + "bias"]

    Q, K, V = dense(q, "query_"), dense(k, "key_"), dense(v, "value_")
    b, tq, c = Q.shape
    d = c // heads
    out = np.zeros_like(Q)
    for i in range(b):
        valid = mask[i] > 0
        for h in range(heads):
            sl = slice(h * d, (h + 1) * d)
            if not valid.any():
                continue                       # no key: attention output is 0
            s = Q[i, :, sl] @ K[i][valid][:, sl].T / np.sqrt(d)       # (Tq, Tk_valid)
            s = np.exp(s - s.max(axis=1, keepdims=True))
            a = s / s.sum(axis=1, keepdims=True)
            out[i, :, sl] = a @ V[i][valid][:, sl]
    return dense(out, "out_")


def _weights(mha):
    return {name[len(mha.prefix):]: p.data().asnumpy() for name, p in mha.collect_params().items()}


@pytest.fixture
def setup():
    mx.random.seed(0)
    rng = np.random.RandomState(0)
    mha = MultiHeadAttention(C, H, prefix="mha_")
    mha.initialize(mx.init.Normal(0.5))
    q = rng.randn(B, TQ, C).astype("float32")
    k = rng.randn(B, TK, C).astype("float32")
    v = rng.randn(B, TK, C).astype("float32")
    mask = np.array([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [0, 0, 0, 0, 0]], dtype="float32")
    return mha, q, k, v, mask


@pytest.mark.parametrize("hybrid", [False, True])
def test_mha_matches_numpy_reference(setup, hybrid):
    mha, q, k, v, mask = setup
    if hybrid:
        mha.hybridize(static_alloc=True, static_shape=True)
    out = mha(*[mx.nd.array(a) for a in (q, k, v, mask)]).asnumpy()
    ref = _np_mha(q, k, v, mask, _weights(mha), H)
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)


def test_mha_padded_keys_do_not_change_output(setup):
    mha, q, k, v, mask = setup
    out = mha(*[mx.nd.array(a) for a in (q, k, v, mask)]).asnumpy()
    k2, v2 = k.copy(), v.copy()
    pad = mask == 0
    k2[pad] = 1e3 * np.random.RandomState(1).randn(pad.sum(), C)
    v2[pad] = -7.0
    out2 = mha(*[mx.nd.array(a) for a in (q, k2, v2, mask)]).asnumpy()
    np.testing.assert_array_equal(out, out2)


def test_mha_all_keys_masked_gives_exact_zero_attention(setup):
    mha, q, k, v, mask = setup
    out = mha(*[mx.nd.array(a) for a in (q, k, v, mask)]).asnumpy()
    bias = mha.proj_out.bias.data().asnumpy()
    assert np.isfinite(out).all()
    # sample 2 has no key: the attention output is exactly 0, so only the out bias is left
    np.testing.assert_array_equal(out[2], np.broadcast_to(bias, out[2].shape))


def test_cross_transformer_stack_ignores_padded_source():
    mx.random.seed(1)
    rng = np.random.RandomState(2)
    stack = TransformerStack(2, C, H, 16, cross=True, prefix="cross_")
    stack.initialize(mx.init.Xavier())
    stack.hybridize(static_alloc=True, static_shape=True)
    x = mx.nd.array(rng.randn(B, TQ, C))
    src = rng.randn(B, TK, C).astype("float32")
    mask = np.array([[1, 1, 1, 0, 0], [0, 0, 0, 0, 0], [1, 0, 0, 0, 0]], dtype="float32")
    out = stack(x, mx.nd.array(src), mx.nd.array(mask)).asnumpy()
    src[mask == 0] = 55.0
    out2 = stack(x, mx.nd.array(src), mx.nd.array(mask)).asnumpy()
    assert np.isfinite(out).all()
    np.testing.assert_array_equal(out, out2)


@pytest.mark.parametrize("mode", ["mean", "attention"])
def test_masked_pool(mode):
    rng = np.random.RandomState(3)
    pool = MaskedPool(C, mode, prefix="pool_")
    pool.initialize(mx.init.Xavier())
    x = rng.randn(B, TK, C).astype("float32")
    mask = np.array([[1, 1, 1, 0, 0], [0, 0, 0, 0, 0], [1, 1, 1, 1, 1]], dtype="float32")
    out = pool(mx.nd.array(x), mx.nd.array(mask)).asnumpy()
    np.testing.assert_array_equal(out[1], np.zeros(C, "float32"))
    if mode == "mean":
        np.testing.assert_allclose(out[0], x[0, :3].mean(0), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(out[2], x[2].mean(0), rtol=1e-5, atol=1e-6)
    x[mask == 0] = 9.0
    np.testing.assert_array_equal(out, pool(mx.nd.array(x), mx.nd.array(mask)).asnumpy())
