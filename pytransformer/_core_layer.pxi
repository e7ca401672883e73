# _core_layer.pxi: bindings for csrc/layer_encoder.c, layer_decoder.c,
# attention_decode.c, decode_greedy.c and decode_beam.c (included by _core.pyx).
from libc.stdlib cimport malloc, free
from libc.string cimport memcpy

# The parameters of one layer, in pt_layer's order; n1..n3 are norm1..norm3.
LAYER_FIELDS = ("sa_w", "sa_b", "sa_ow", "sa_ob", "ca_w", "ca_b", "ca_ow", "ca_ob",
                "ff1_w", "ff1_b", "ff2_w", "ff2_b", "n1_w", "n1_b", "n2_w", "n2_b",
                "n3_w", "n3_b")
_ACTS = {"relu": PT_ACT_RELU, "gelu": PT_ACT_GELU_ERF, "none": PT_ACT_NONE}
cdef enum:
    _MAX_STACK = 256      # most layers: their cache pointers live in the call's stack arrays


cdef inline object _array_of(object p):
    """A Parameter's (or Tensor's) array, or the array itself."""
    return p if p is None or isinstance(p, np.ndarray) else p.data


cdef list _pack_entry(object t, list vc, const float *w, int64_t out, int64_t n_in):
    """A packed copy of the float32 weight w (out, n_in), the array of
    tensor t whose version counter is vc: [tensor, its counter list,
    version packed, weight, copy (64-byte aligned), out, in]."""
    cdef int64_t size = pt_linear_pack_size_f32(out, n_in)
    buf = np.empty(size + 16, np.float32)
    cdef int64_t off = (-<int64_t><uintptr_t>_ptr(buf) % 64) // 4
    buf = buf[off:off + size]
    check_status(pt_linear_pack_f32(<float *>_ptr(buf), w, out, n_in))
    return [t, vc, vc[0], <uintptr_t>w, buf, out, n_in]


cdef class LayerStack:
    """The weight pointers of a stack of Transformer layers, packed once,
    for the whole-layer C kernels (inference only: nothing is saved for
    backward).

    LayerStack(layers, final=None, decoder=False): layers a list of dicts,
    one per layer, with E, H, F (sizes), norm_first (bool), act ('relu',
    'gelu' (erf) or 'none'), eps (the three norms' eps) and the parameters
    named by LAYER_FIELDS (arrays, Parameters/Tensors, or (mapping, key)
    pairs naming a module's parameter, e.g. (linear._parameters, 'bias');
    a missing or None entry is an absent bias or norm weight; the ca_*
    entries only with decoder=True). final: None or (weight, bias, eps) of the stack's final
    norm. Every array must be C-contiguous, of one float dtype, with the
    shape its field needs; TypeError/ValueError name the first that is not.
    The LayerStack keeps the arrays alive; stale() says when a parameter
    now holds a different array or a module another parameter (then build
    a new LayerStack). It owns the
    workspace the kernels use, reused across calls.

    packed=True (float32 stacks): the projection weights given as
    Parameters/Tensors (or (mapping, key) pairs naming one) are also copied
    into the panel layout of the linear family's packed kernel
    (csrc/linear_packed.c), which the projections of few rows read
    instead. A decoder stack packs the six weights of its step per layer
    (q/k/v and out projections of self-attention, the query rows and out
    projection of cross-attention, the two of the feed-forward block; a
    layer packs all six or none, as packed_step wants them), and the
    decoding loops (greedy, beam) keep a packed copy of the generator's
    weight given as gen_param the same way; the step's products of at
    least PT_DECODER_PACKED_ROWS rows read the copies (csrc/pt_layer.h's
    lay_linear). A copy is kept equal to its weight: before each call, a
    weight whose tensor's version counter moved (the tensor's in-place
    methods, load_state_dict, the optimizers and nn.init count their
    writes there) or whose array no longer matches the copy at a fixed
    sample of elements is packed again; a weight given another array makes
    the stack stale(). A call made while another call of this LayerStack
    runs reads every weight in place."""

    cdef pt_layer_f32 *l32
    cdef pt_layer_f64 *l64
    cdef readonly int64_t nlayers, E, H, F
    cdef readonly object dtype
    cdef readonly bint decoder
    cdef list _sources
    cdef int _final_norm
    cdef double _final_eps
    cdef object _final_w, _final_b
    cdef object _work
    cdef bint _busy
    cdef list _bound
    cdef list _packs
    cdef list _gen
    cdef pt_layer_f32 *_unpacked
    cdef readonly int64_t repacks
    cdef bint _packing

    def __cinit__(self):
        self.l32 = NULL
        self.l64 = NULL
        self._unpacked = NULL

    def __dealloc__(self):
        free(self.l32)
        free(self.l64)
        free(self._unpacked)

    def __init__(self, list layers, object final=None, bint decoder=False, bint packed=False):
        if not layers:
            raise ValueError("layers: expected at least one layer")
        if len(layers) > _MAX_STACK:
            raise ValueError(f"layers: at most {_MAX_STACK} layers, got {len(layers)}")
        first = layers[0]
        self.E, self.H, self.F = first["E"], first["H"], first["F"]
        if self.E <= 0 or self.H <= 0 or self.F <= 0 or self.E % self.H:
            raise ValueError(f"layers: sizes E={self.E}, H={self.H}, F={self.F} must be "
                             f"positive with E divisible by H")
        self.nlayers = len(layers)
        self.decoder = decoder
        w0 = first["sa_w"]
        if isinstance(w0, tuple):
            w0 = w0[0].get(w0[1])
        w0 = _array_of(w0)
        self.dtype = _float_dtype("layers[0].sa_w", w0)
        self._sources = []
        cdef Py_ssize_t n = self.nlayers
        if self.dtype == np.float32:
            self.l32 = <pt_layer_f32 *>malloc(n * sizeof(pt_layer_f32))
            if self.l32 == NULL:
                raise MemoryError("LayerStack: out of memory")
        else:
            self.l64 = <pt_layer_f64 *>malloc(n * sizeof(pt_layer_f64))
            if self.l64 == NULL:
                raise MemoryError("LayerStack: out of memory")
        cdef Py_ssize_t i
        for i in range(n):
            self._pack(i, layers[i])
        self._final_norm = final is not None
        self._final_w = self._final_b = None
        if final is not None:
            fw, fb, eps = final
            self._final_w = self._keep("final.weight", fw, (self.E,))
            self._final_b = self._keep("final.bias", fb, (self.E,))
            self._final_eps = eps
        self._work = None
        self._busy = False
        self._bound = None
        self._packs = []
        self._gen = None
        self.repacks = 0
        self._packing = packed and self.l32 != NULL
        if self._packing:
            for i in range(n):
                self._pack_weights(i, layers[i])

    cdef _pack_weights(self, Py_ssize_t i, dict d):
        """Pack layer i's projection weights that come with a version
        counter (a Parameter or Tensor, or a (mapping, key) naming one) and
        point the layer's *_wp fields at the copies (a decoder layer: all
        six of its step, then packed_step, or none)."""
        cdef pt_layer_f32 *a = &self.l32[i]
        cdef int64_t E = self.E, F = self.F
        cdef const float *w
        fields = (("sa_w", 3 * E, E), ("sa_ow", E, E), ("ff1_w", F, E), ("ff2_w", E, F))
        if self.decoder:
            fields += (("ca_w", E, E), ("ca_ow", E, E))      # ca_w: its query rows
        found = []
        for f, out, n_in in fields:
            t = d.get(f)
            if isinstance(t, tuple):
                t = t[0].get(t[1])
            vc = getattr(t, "_vc", None)
            if isinstance(vc, list):
                found.append((f, out, n_in, t, vc))
            elif self.decoder:
                return                    # a weight without a counter: the layer reads in place
        for f, out, n_in, t, vc in found:
            w = (a.sa_w if f == "sa_w" else a.sa_ow if f == "sa_ow" else
                 a.ff1_w if f == "ff1_w" else a.ff2_w if f == "ff2_w" else
                 a.ca_w if f == "ca_w" else a.ca_ow)
            e = _pack_entry(t, vc, w, out, n_in)
            wp = <const float *>_ptr(e[4])
            if f == "sa_w":
                a.sa_wp = wp
            elif f == "sa_ow":
                a.sa_owp = wp
            elif f == "ff1_w":
                a.ff1_wp = wp
            elif f == "ff2_w":
                a.ff2_wp = wp
            elif f == "ca_w":
                a.ca_qwp = wp
            else:
                a.ca_owp = wp
            self._packs.append(e)
        if self.decoder:
            a.packed_step = PT_DECODER_PACKED_ROWS

    cdef uintptr_t _gen_packed(self, object gen, object gen_w) except? 0:
        """The packed copy of the generator's weight gen_w (V, E), the
        array of the Parameter/Tensor gen, made on first use (again when
        gen or its array changed) and refreshed as the stack's own; NULL
        when this stack keeps no packed copies or gen has no version
        counter."""
        vc = getattr(gen, "_vc", None)
        if not self._packing or not isinstance(vc, list) or gen.data is not gen_w:
            return 0
        cdef const float *w = <const float *>_ptr(gen_w)
        e = self._gen
        if e is None or e[0] is not gen or e[3] != <uintptr_t>w or \
                (e[5], e[6]) != gen_w.shape:
            e = self._gen = _pack_entry(gen, vc, w, gen_w.shape[0], gen_w.shape[1])
        else:
            self._refresh_entry(e)
        return <uintptr_t>_ptr(e[4])

    @property
    def packed(self):
        """How many weights have a packed copy."""
        return len(self._packs)

    cdef _refresh(self):
        """Pack again every weight whose version moved or whose array no
        longer matches its copy at the sampled elements."""
        cdef list e
        for e in self._packs:
            self._refresh_entry(e)

    cdef _refresh_entry(self, list e):
        cdef const float *w = <const float *><uintptr_t>e[3]
        cdef float *wp = <float *>_ptr(e[4])
        vc = e[0]._vc
        if vc is e[1] and vc[0] == e[2] and pt_linear_pack_matches_f32(wp, w, e[5], e[6]):
            return
        check_status(pt_linear_pack_f32(wp, w, e[5], e[6]))
        e[1], e[2] = vc, vc[0]
        self.repacks += 1

    cdef const pt_layer_f32 *_layers_unpacked(self) except NULL:
        """The layers with no packed weights (for a call made while
        another runs: the copies may be repacked only between calls)."""
        if self._unpacked == NULL:
            self._unpacked = <pt_layer_f32 *>malloc(self.nlayers * sizeof(pt_layer_f32))
            if self._unpacked == NULL:
                raise MemoryError("LayerStack: out of memory")
            memcpy(self._unpacked, self.l32, self.nlayers * sizeof(pt_layer_f32))
            for i in range(self.nlayers):
                self._unpacked[i].sa_wp = self._unpacked[i].sa_owp = NULL
                self._unpacked[i].ff1_wp = self._unpacked[i].ff2_wp = NULL
                self._unpacked[i].ca_qwp = self._unpacked[i].ca_owp = NULL
                self._unpacked[i].packed_step = 0
        return self._unpacked

    cdef const pt_layer_f32 *_layers_for_call(self, bint mine) except NULL:
        """The float32 layers a call reads: with the packed copies
        refreshed (mine: no other call of this stack runs), or with none."""
        if not self._packs:
            return self.l32
        if mine:
            self._refresh()
            return self.l32
        return self._layers_unpacked()

    cdef object _keep(self, str name, object p, tuple shape):
        """Check one parameter's array and keep it with where it came from:
        p is an array, a Parameter/Tensor (its .data), or (mapping, key),
        the array being mapping[key].data (None when that entry is None)."""
        if isinstance(p, tuple):
            mapping, key = p
            src = mapping.get(key)
            a = None if src is None else src.data
            self._sources.append((mapping, key, a))
        else:
            a = _array_of(p)
            if a is not None and not isinstance(p, np.ndarray):
                self._sources.append((None, p, a))
        if a is None:
            return None
        _check(name, a, self.dtype, shape)
        return a

    cdef _pack(self, Py_ssize_t i, dict d):
        E, H, F = self.E, self.H, self.F
        if (d["E"], d["H"], d["F"]) != (E, H, F):
            raise ValueError(f"layers[{i}]: sizes {(d['E'], d['H'], d['F'])} differ from "
                             f"layers[0]'s {(E, H, F)}")
        act = d.get("act", "relu")
        if act not in _ACTS:
            raise ValueError(f"layers[{i}].act: expected 'relu', 'gelu' or 'none', got {act!r}")
        shapes = {"sa_w": (3 * E, E), "sa_b": (3 * E,), "sa_ow": (E, E), "sa_ob": (E,),
                  "ca_w": (3 * E, E), "ca_b": (3 * E,), "ca_ow": (E, E), "ca_ob": (E,),
                  "ff1_w": (F, E), "ff1_b": (F,), "ff2_w": (E, F), "ff2_b": (E,)}
        ptr = {}
        for f in LAYER_FIELDS:
            if f.startswith("ca_") and not self.decoder:
                ptr[f] = 0
                continue
            arr = self._keep(f"layers[{i}].{f}", d.get(f), shapes.get(f, (E,)))
            ptr[f] = <uintptr_t>_ptr(arr)
        for f in ("sa_w", "sa_ow", "ff1_w", "ff2_w") + (("ca_w", "ca_ow") if self.decoder else ()):
            if not ptr[f]:
                raise TypeError(f"layers[{i}].{f}: expected an array, got None")
        eps = tuple(d.get("eps", (1e-5, 1e-5, 1e-5)))
        eps = eps + (1e-5,) * (3 - len(eps))
        cdef pt_layer_f32 *a
        cdef pt_layer_f64 *b
        cdef int k
        if self.l32 != NULL:
            a = &self.l32[i]
            a.sa_wp = a.sa_owp = a.ff1_wp = a.ff2_wp = NULL   # _pack_weights sets them
            a.ca_qwp = a.ca_owp = NULL
            a.packed_step = 0
            a.E, a.H, a.F = E, H, F
            a.norm_first, a.act = bool(d["norm_first"]), _ACTS[act]
            a.sa_w = <float *><uintptr_t>ptr["sa_w"]; a.sa_b = <float *><uintptr_t>ptr["sa_b"]
            a.sa_ow = <float *><uintptr_t>ptr["sa_ow"]; a.sa_ob = <float *><uintptr_t>ptr["sa_ob"]
            a.ca_w = <float *><uintptr_t>ptr["ca_w"]; a.ca_b = <float *><uintptr_t>ptr["ca_b"]
            a.ca_ow = <float *><uintptr_t>ptr["ca_ow"]; a.ca_ob = <float *><uintptr_t>ptr["ca_ob"]
            a.ff1_w = <float *><uintptr_t>ptr["ff1_w"]; a.ff1_b = <float *><uintptr_t>ptr["ff1_b"]
            a.ff2_w = <float *><uintptr_t>ptr["ff2_w"]; a.ff2_b = <float *><uintptr_t>ptr["ff2_b"]
            for k in range(3):
                a.norm_w[k] = <float *><uintptr_t>ptr[f"n{k + 1}_w"]
                a.norm_b[k] = <float *><uintptr_t>ptr[f"n{k + 1}_b"]
                a.norm_eps[k] = <float>eps[k]
        else:
            b = &self.l64[i]
            b.sa_wp = b.sa_owp = b.ff1_wp = b.ff2_wp = NULL
            b.ca_qwp = b.ca_owp = NULL
            b.packed_step = 0
            b.E, b.H, b.F = E, H, F
            b.norm_first, b.act = bool(d["norm_first"]), _ACTS[act]
            b.sa_w = <double *><uintptr_t>ptr["sa_w"]; b.sa_b = <double *><uintptr_t>ptr["sa_b"]
            b.sa_ow = <double *><uintptr_t>ptr["sa_ow"]; b.sa_ob = <double *><uintptr_t>ptr["sa_ob"]
            b.ca_w = <double *><uintptr_t>ptr["ca_w"]; b.ca_b = <double *><uintptr_t>ptr["ca_b"]
            b.ca_ow = <double *><uintptr_t>ptr["ca_ow"]; b.ca_ob = <double *><uintptr_t>ptr["ca_ob"]
            b.ff1_w = <double *><uintptr_t>ptr["ff1_w"]; b.ff1_b = <double *><uintptr_t>ptr["ff1_b"]
            b.ff2_w = <double *><uintptr_t>ptr["ff2_w"]; b.ff2_b = <double *><uintptr_t>ptr["ff2_b"]
            for k in range(3):
                b.norm_w[k] = <double *><uintptr_t>ptr[f"n{k + 1}_w"]
                b.norm_b[k] = <double *><uintptr_t>ptr[f"n{k + 1}_b"]
                b.norm_eps[k] = eps[k]

    def stale(self):
        """True when a parameter packed here now holds another array, or a
        (mapping, key) source now names another parameter or none (a
        load_state_dict, an assignment or a dtype change replaced it): the
        pointers are then out of date."""
        cdef tuple src
        for src in self._sources:
            mapping, key, a = src
            if mapping is None:
                cur = key.data
            else:
                p = mapping.get(key)
                cur = None if p is None else p.data
            if cur is not a:
                return True
        return False

    cdef object _workspace(self, int64_t n):
        """A workspace of at least n elements: the kept one (grown when too
        small), or a fresh one while another call holds it."""
        if self._busy:
            return np.empty(max(n, 1), self.dtype)
        if self._work is None or self._work.shape[0] < n:
            self._work = np.empty(max(n, 1), self.dtype)
        return self._work

    cdef int64_t _start_stop(self, int64_t start, int64_t stop) except -1:
        if stop < 0:
            stop = self.nlayers
        if not 0 <= start < stop <= self.nlayers:
            raise ValueError(f"layers [{start}, {stop}): expected 0 <= start < stop <= "
                             f"{self.nlayers}")
        return stop

    def encoder_forward(self, object x, object offsets, object key_mask, object attn_mask,
                        int64_t B, int64_t T, bint is_causal=False, int64_t start=0,
                        int64_t stop=-1, bint final=True):
        """x (N, E) := layers [start, stop) of the encoder stack applied to
        x, then the final norm (when there is one, final is set and stop is
        the last layer). Padded: offsets None, N = B*T, key_mask (B, T) and
        attn_mask (T, T) additive or None. Packed: offsets (B+1,) int64 row
        offsets of the B sequences (each at most T rows), key_mask None."""
        stop = self._start_stop(start, stop)
        dt = self.dtype
        cdef int64_t N = B * T
        if offsets is not None:
            _check("offsets", offsets, np.int64, (B + 1,))
            if key_mask is not None:
                raise ValueError("key_mask: not used with offsets (the lengths mask the keys)")
            N = offsets[B] if B > 0 else 0
        _check("x", x, dt, (N, self.E), out=True)
        _check("key_mask", key_mask, dt, (B, T), optional=True)
        _check("attn_mask", attn_mask, dt, (T, T), optional=True)
        cdef int both = key_mask is not None and attn_mask is not None
        cdef int64_t need
        if self.l32 != NULL:
            need = pt_encoder_workspace_f32(self.l32, N, B, T, both)
        else:
            need = pt_encoder_workspace_f64(self.l64, N, B, T, both)
        work = self._workspace(need)
        cdef void *px = _ptr(x)
        cdef void *pw = _ptr(work)
        cdef int64_t *po = <int64_t *>_ptr(offsets)
        cdef void *pk = _ptr(key_mask)
        cdef void *pa = _ptr(attn_mask)
        cdef void *fw = _ptr(self._final_w)
        cdef void *fb = _ptr(self._final_b)
        cdef int fin = self._final_norm and final and stop == self.nlayers
        cdef int causal = is_causal, st
        cdef int64_t nl = stop - start
        cdef bint mine = not self._busy
        cdef const pt_layer_f32 *lay = self.l32
        self._busy = True                 # before the refresh: a call meanwhile reads in place
        try:
            if self._packs:
                if mine:
                    self._refresh()
                else:
                    lay = self._layers_unpacked()
            if self.l32 != NULL:
                with nogil:
                    st = pt_encoder_forward_f32(<float *>px, <float *>pw, lay + start, nl,
                                                po, <float *>pk, <float *>pa, B, T, causal, fin,
                                                <float *>fw, <float *>fb, <float>self._final_eps)
            else:
                with nogil:
                    st = pt_encoder_forward_f64(<double *>px, <double *>pw, self.l64 + start, nl,
                                                po, <double *>pk, <double *>pa, B, T, causal,
                                                fin, <double *>fw, <double *>fb, self._final_eps)
        finally:
            if mine:
                self._busy = False
        check_status(st)

    def cross_kv(self, list ks, list vs, object memory):
        """ks[l], vs[l] (B, H, S, E/H) := layer l's cross-attention keys and
        values of memory (B, S, E) (decoder stacks only)."""
        if not self.decoder:
            raise ValueError("cross_kv: this LayerStack was not built with decoder=True")
        dt = self.dtype
        if not isinstance(memory, np.ndarray) or memory.ndim != 3:
            raise ValueError("memory: expected a 3-D array (B, S, E)")
        cdef int64_t B = memory.shape[0], S = memory.shape[1]
        _check("memory", memory, dt, (B, S, self.E))
        if len(ks) != self.nlayers or len(vs) != self.nlayers:
            raise ValueError(f"ks, vs: expected {self.nlayers} arrays each")
        cdef void *pk[_MAX_STACK]
        cdef void *pv[_MAX_STACK]
        cdef Py_ssize_t i
        shape = (B, self.H, S, self.E // self.H)
        for i in range(self.nlayers):
            _check(f"ks[{i}]", ks[i], dt, shape, out=True)
            _check(f"vs[{i}]", vs[i], dt, shape, out=True)
            pk[i] = _ptr(ks[i])
            pv[i] = _ptr(vs[i])
        cdef int64_t need
        if self.l32 != NULL:
            need = pt_decoder_cross_kv_workspace_f32(self.l32, B, S)
        else:
            need = pt_decoder_cross_kv_workspace_f64(self.l64, B, S)
        work = np.empty(max(need, 1), dt)
        cdef void *pw = _ptr(work)
        cdef void *pm = _ptr(memory)
        cdef int st
        if self.l32 != NULL:
            with nogil:
                st = pt_decoder_cross_kv_f32(<float **>pk, <float **>pv, <float *>pw, self.l32,
                                             self.nlayers, <float *>pm, B, S)
        else:
            with nogil:
                st = pt_decoder_cross_kv_f64(<double **>pk, <double **>pv, <double *>pw,
                                             self.l64, self.nlayers, <double *>pm, B, S)
        check_status(st)

    cdef _bind(self, list caches, int64_t B):
        """Check the decoder caches: per layer (self_k, self_v, cross_k,
        cross_v); remembered, so an unchanged list is not checked again."""
        if len(caches) != 4 * self.nlayers:
            raise ValueError(f"caches: expected {4 * self.nlayers} arrays (self_k, self_v, "
                             f"cross_k, cross_v per layer), got {len(caches)}")
        dt, H, d = self.dtype, self.H, self.E // self.H
        cdef Py_ssize_t i
        for i in range(self.nlayers):
            sk, sv = caches[4 * i], caches[4 * i + 1]
            ck, cv = caches[4 * i + 2], caches[4 * i + 3]
            if not isinstance(sk, np.ndarray) or sk.ndim != 4 or \
                    not isinstance(ck, np.ndarray) or ck.ndim != 4:
                raise ValueError(f"caches of layer {i}: expected 4-D arrays (B, H, T, d)")
            cap, S = sk.shape[2], ck.shape[2]
            if (cap, S) != (caches[0].shape[2], caches[2].shape[2]):
                raise ValueError(f"caches of layer {i}: capacity or memory length differs "
                                 f"from layer 0's")
            _check(f"self_k[{i}]", sk, dt, (B, H, cap, d), out=True)
            _check(f"self_v[{i}]", sv, dt, (B, H, cap, d), out=True)
            _check(f"cross_k[{i}]", ck, dt, (B, H, S, d))
            _check(f"cross_v[{i}]", cv, dt, (B, H, S, d))
        self._bound = list(caches)

    def decoder_step(self, object x, list caches, object src_mask, object src_len,
                     int64_t t):
        """One step of the whole decoder stack: x (B, E), the inputs at
        position t, := the outputs there (after the final norm, when there
        is one). caches: per layer self_k, self_v (B, H, capacity, E/H),
        whose position t is written, and cross_k, cross_v (B, H, S, E/H)
        from cross_kv. src_mask (B, S) additive, or src_len (B,) int64 key
        counts, or neither."""
        if not self.decoder:
            raise ValueError("decoder_step: this LayerStack was not built with decoder=True")
        dt = self.dtype
        if not isinstance(x, np.ndarray) or x.ndim != 2:
            raise ValueError("x: expected a 2-D array (B, E)")
        cdef int64_t B = x.shape[0]
        _check("x", x, dt, (B, self.E), out=True)
        if self._bound is None or len(caches) != len(self._bound) or \
                any(a is not b for a, b in zip(caches, self._bound)) or \
                caches[0].shape[0] != B:
            self._bind(caches, B)
        cdef int64_t cap = caches[0].shape[2], S = caches[2].shape[2]
        if not 0 <= t < cap:
            raise ValueError(f"t: position {t} is outside the cache's capacity ({cap})")
        _check("src_mask", src_mask, dt, (B, S), optional=True)
        _check("src_len", src_len, np.int64, (B,), optional=True)
        cdef void *sk[_MAX_STACK]
        cdef void *sv[_MAX_STACK]
        cdef void *ck[_MAX_STACK]
        cdef void *cv[_MAX_STACK]
        cdef Py_ssize_t i
        for i in range(self.nlayers):
            sk[i] = _ptr(caches[4 * i])
            sv[i] = _ptr(caches[4 * i + 1])
            ck[i] = _ptr(caches[4 * i + 2])
            cv[i] = _ptr(caches[4 * i + 3])
        cdef int64_t need
        if self.l32 != NULL:
            need = pt_decoder_step_workspace_f32(self.l32, B, cap, S)
        else:
            need = pt_decoder_step_workspace_f64(self.l64, B, cap, S)
        work = self._workspace(need)
        cdef void *px = _ptr(x)
        cdef void *pw = _ptr(work)
        cdef void *pm = _ptr(src_mask)
        cdef int64_t *pl = <int64_t *>_ptr(src_len)
        cdef void *fw = _ptr(self._final_w)
        cdef void *fb = _ptr(self._final_b)
        cdef int fin = self._final_norm, st
        cdef bint mine = not self._busy
        cdef const pt_layer_f32 *lay = self.l32
        self._busy = True                 # before the refresh: a call meanwhile reads in place
        try:
            if self.l32 != NULL:
                lay = self._layers_for_call(mine)
                with nogil:
                    st = pt_decoder_step_f32(<float *>px, <float **>sk, <float **>sv,
                                             <float *>pw, lay, self.nlayers,
                                             <const float **>ck, <const float **>cv,
                                             <float *>pm, pl, NULL, B, t, cap, S, fin,
                                             <float *>fw, <float *>fb, <float>self._final_eps)
            else:
                with nogil:
                    st = pt_decoder_step_f64(<double *>px, <double **>sk, <double **>sv,
                                             <double *>pw, self.l64, self.nlayers,
                                             <const double **>ck, <const double **>cv,
                                             <double *>pm, pl, NULL, B, t, cap, S, fin,
                                             <double *>fw, <double *>fb, self._final_eps)
        finally:
            if mine:
                self._busy = False
        check_status(st)


    cdef int64_t _describe(self, str what, object embed, double embed_scale, object positions,
                           object gen_w, object gen_b, int64_t cap, int64_t pad, int64_t bos,
                           int64_t eos, pt_greedy_f32 *g32, pt_greedy_f64 *g64) except -1:
        """Check the model around the decoder stack and fill the description
        of this stack's dtype (g32 or g64) the decoding loops read; returns V."""
        if not self.decoder:
            raise ValueError(f"{what}: this LayerStack was not built with decoder=True")
        dt = self.dtype
        cdef int64_t E = self.E
        if not isinstance(embed, np.ndarray) or embed.ndim != 2:
            raise ValueError("embed: expected a 2-D array (rows, E)")
        _check("embed", embed, dt, (embed.shape[0], E))
        if not isinstance(positions, np.ndarray) or positions.ndim != 2 or \
                positions.shape[0] < cap:
            raise ValueError(f"positions: expected a 2-D array of at least {cap} rows")
        _check("positions", positions, dt, (positions.shape[0], E))
        if not isinstance(gen_w, np.ndarray) or gen_w.ndim != 2:
            raise ValueError("gen_w: expected a 2-D array (V, E)")
        cdef int64_t V = gen_w.shape[0]
        _check("gen_w", gen_w, dt, (V, E))
        _check("gen_b", gen_b, dt, (V,), optional=True)
        if not (0 <= pad < V and 0 <= bos < V):
            raise ValueError(f"pad, bos: expected ids in [0, {V}), got {pad} and {bos}")
        if self.l32 != NULL:
            g32.layers, g32.nlayers = self.l32, self.nlayers
            g32.final_norm = self._final_norm
            g32.final_w = <float *>_ptr(self._final_w)
            g32.final_b = <float *>_ptr(self._final_b)
            g32.final_eps = <float>self._final_eps
            g32.embed, g32.embed_rows = <float *>_ptr(embed), embed.shape[0]
            g32.embed_scale = <float>embed_scale
            g32.positions = <float *>_ptr(positions)
            g32.gen_w, g32.gen_b, g32.V = <float *>_ptr(gen_w), <float *>_ptr(gen_b), V
            g32.gen_wp = NULL
            g32.pad, g32.bos, g32.eos = pad, bos, eos
        else:
            g64.layers, g64.nlayers = self.l64, self.nlayers
            g64.final_norm = self._final_norm
            g64.final_w = <double *>_ptr(self._final_w)
            g64.final_b = <double *>_ptr(self._final_b)
            g64.final_eps = self._final_eps
            g64.embed, g64.embed_rows = <double *>_ptr(embed), embed.shape[0]
            g64.embed_scale = embed_scale
            g64.positions = <double *>_ptr(positions)
            g64.gen_w, g64.gen_b, g64.V = <double *>_ptr(gen_w), <double *>_ptr(gen_b), V
            g64.gen_wp = NULL
            g64.pad, g64.bos, g64.eos = pad, bos, eos
        return V

    cdef tuple _loop_caches(self, list caches, int64_t rows, int64_t sentences, void **sk,
                            void **sv, void **ck, void **cv):
        """Check the caches of a decoding loop -- per layer self_k, self_v
        (rows, H, capacity, d), rewritten, and cross_k, cross_v
        (sentences, H, S, d), read -- and set the pointer arrays; returns
        (capacity, S)."""
        if len(caches) != 4 * self.nlayers or not isinstance(caches[0], np.ndarray) or \
                caches[0].ndim != 4 or not isinstance(caches[2], np.ndarray) or \
                caches[2].ndim != 4:
            raise ValueError(f"caches: expected {4 * self.nlayers} 4-D arrays (self_k, "
                             f"self_v, cross_k, cross_v per layer)")
        cdef int64_t cap = caches[0].shape[2], S = caches[2].shape[2]
        cdef int64_t d = self.E // self.H
        cdef Py_ssize_t i
        for i in range(4 * self.nlayers):
            if i % 4 < 2:
                _check(f"caches[{i}]", caches[i], self.dtype, (rows, self.H, cap, d), out=True)
            else:
                _check(f"caches[{i}]", caches[i], self.dtype, (sentences, self.H, S, d))
        if cap < 1:
            raise ValueError("caches: the self-attention caches have no room (capacity 0)")
        for i in range(self.nlayers):
            sk[i] = _ptr(caches[4 * i])
            sv[i] = _ptr(caches[4 * i + 1])
            ck[i] = _ptr(caches[4 * i + 2])
            cv[i] = _ptr(caches[4 * i + 3])
        return cap, S

    def greedy(self, object embed, double embed_scale, object positions, object gen_w,
               object gen_b, list caches, object src_mask, int64_t pad, int64_t bos,
               int64_t eos, object ids, object lengths, object logp=None,
               object gen_param=None):
        """Greedy decoding of a batch through this decoder stack, the whole
        loop in one C call (csrc/decode_greedy.c): per step, embed[token] *
        embed_scale + positions[t], the stack's step, the generator
        (gen_w (V, E), gen_b (V,) or None), the argmax over the logits with
        pad and bos excluded, from bos until eos or max_len steps. caches
        as decoder_step's, with empty self caches of capacity max_len;
        src_mask (B, S) additive or None. The self caches are compacted in
        place as rows finish (their contents are spent); the cross caches
        and src_mask are only read.
        Out: ids (B, max_len) int64, each step's token (EOS included,
        entries after it untouched); lengths (B,) int64, the step that gave
        EOS or max_len; logp (B, max_len) float64 or None, each token's
        log-probability. gen_param: the Parameter/Tensor whose array is
        gen_w, for the generator's packed copy (packed=True), or None."""
        if not self.decoder:
            raise ValueError("greedy: this LayerStack was not built with decoder=True")
        if len(caches) != 4 * self.nlayers or not isinstance(caches[0], np.ndarray) or \
                caches[0].ndim != 4:
            raise ValueError(f"caches: expected {4 * self.nlayers} 4-D arrays (self_k, "
                             f"self_v, cross_k, cross_v per layer)")
        cdef int64_t B = caches[0].shape[0]
        cdef void *sk[_MAX_STACK]
        cdef void *sv[_MAX_STACK]
        cdef void *ck[_MAX_STACK]
        cdef void *cv[_MAX_STACK]
        cap, S = self._loop_caches(caches, B, B, sk, sv, ck, cv)
        cdef pt_greedy_f32 g32
        cdef pt_greedy_f64 g64
        self._describe("greedy", embed, embed_scale, positions, gen_w, gen_b, cap, pad, bos,
                       eos, &g32, &g64)
        _check("src_mask", src_mask, self.dtype, (B, S), optional=True)
        _check("ids", ids, np.int64, (B, cap), out=True)
        _check("lengths", lengths, np.int64, (B,), out=True)
        _check("logp", logp, np.float64, (B, cap), out=True, optional=True)
        cdef int64_t need
        if self.l32 != NULL:
            need = pt_greedy_workspace_f32(&g32, B, cap, S)
        else:
            need = pt_greedy_workspace_f64(&g64, B, cap, S)
        work = self._workspace(need)
        iwork = np.empty(max(2 * B, 1), np.int64)
        cdef void *pw = _ptr(work)
        cdef int64_t *piw = <int64_t *>_ptr(iwork)
        cdef void *pm = _ptr(src_mask)
        cdef int64_t *pids = <int64_t *>_ptr(ids)
        cdef int64_t *plen = <int64_t *>_ptr(lengths)
        cdef double *plp = <double *>_ptr(logp)
        cdef int64_t c_cap = cap, c_S = S
        cdef int st
        cdef bint mine = not self._busy
        self._busy = True                 # before the refresh: a call meanwhile reads in place
        try:
            if self.l32 != NULL:
                g32.layers = self._layers_for_call(mine)
                if g32.layers == self.l32:
                    g32.gen_wp = <const float *>self._gen_packed(gen_param, gen_w)
                with nogil:
                    st = pt_greedy_decode_f32(&g32, <float **>sk, <float **>sv, <float **>ck,
                                              <float **>cv, <float *>pm, B, c_S, c_cap, pids,
                                              plen, plp, <float *>pw, piw)
            else:
                with nogil:
                    st = pt_greedy_decode_f64(&g64, <double **>sk, <double **>sv,
                                              <double **>ck, <double **>cv, <double *>pm, B,
                                              c_S, c_cap, pids, plen, plp, <double *>pw, piw)
        finally:
            if mine:
                self._busy = False
        self._bound = None                # the caches' rows have moved
        check_status(st)

    def beam(self, object embed, double embed_scale, object positions, object gen_w,
             object gen_b, list caches, object src_mask, int64_t B, int64_t pad, int64_t bos,
             int64_t eos, int64_t k, str penalty_kind, double alpha, object count, object ids,
             object lengths, object ended, object scores, object logp=None,
             object gen_param=None):
        """Beam search of width k over B sentences through this decoder
        stack, the whole loop in one C call (csrc/decode_beam.c; the model
        around the stack as greedy's). caches as decoder_step's: self
        caches (B*k, H, max_len, d), rewritten (their contents are spent);
        cross caches (B, H, S, d), the sentences' keys and values, and
        src_mask (B, S) additive or None, only read (the k hypotheses of a
        sentence share its row). penalty_kind
        "gnmt" or "power", alpha >= 0 (decode.length_penalty).
        Out, per sentence b: count (B,) int64, its hypotheses (at most k),
        best first; ids (B, k, max_len) int64, each hypothesis' tokens
        (lengths (B, k) int64 of them, EOS excluded); ended (B, k) int64,
        1 when it produced EOS; scores (B, k) float64; logp (B, k, max_len)
        float64 or None, the tokens' log-probabilities, EOS's last when
        ended. Entries past count are untouched. gen_param as greedy's."""
        if k < 1:
            raise ValueError(f"k: expected a beam width >= 1, got {k}")
        if B < 0:
            raise ValueError(f"B: expected a sentence count >= 0, got {B}")
        kinds = {"gnmt": PT_PENALTY_GNMT, "power": PT_PENALTY_POWER}
        if penalty_kind not in kinds:
            raise ValueError(f"penalty_kind: expected 'gnmt' or 'power', got {penalty_kind!r}")
        if not 0 <= alpha < float("inf"):
            raise ValueError(f"alpha: expected a finite length penalty >= 0, got {alpha}")
        cdef int kind = kinds[penalty_kind]
        cdef void *sk[_MAX_STACK]
        cdef void *sv[_MAX_STACK]
        cdef void *ck[_MAX_STACK]
        cdef void *cv[_MAX_STACK]
        cap, S = self._loop_caches(caches, B * k, B, sk, sv, ck, cv)
        cdef pt_greedy_f32 g32
        cdef pt_greedy_f64 g64
        self._describe("beam", embed, embed_scale, positions, gen_w, gen_b, cap, pad, bos, eos,
                       &g32, &g64)
        _check("src_mask", src_mask, self.dtype, (B, S), optional=True)
        _check("count", count, np.int64, (B,), out=True)
        _check("ids", ids, np.int64, (B, k, cap), out=True)
        _check("lengths", lengths, np.int64, (B, k), out=True)
        _check("ended", ended, np.int64, (B, k), out=True)
        _check("scores", scores, np.float64, (B, k), out=True)
        _check("logp", logp, np.float64, (B, k, cap), out=True, optional=True)
        cdef int64_t c_cap = cap, c_S = S, need
        cdef bint mine = not self._busy
        if self.l32 != NULL:
            # the weights the loop reads decide its workspace: with the
            # stack's packed copies (refreshed here, the GIL held, so no
            # other call starts meanwhile) it packs nothing itself
            g32.layers = self._layers_for_call(mine)
            if g32.layers == self.l32:
                g32.gen_wp = <const float *>self._gen_packed(gen_param, gen_w)
            need = pt_beam_workspace_f32(&g32, B, k, c_cap, c_S)
        else:
            need = pt_beam_workspace_f64(&g64, B, k, c_cap, c_S)
        work = self._workspace(need)
        iwork = np.empty(max(pt_beam_iworkspace_f32(B, k, c_cap), 1), np.int64)
        dwork = np.empty(max(pt_beam_dworkspace_f32(B, k, c_cap, logp is not None), 1))
        cdef void *pw = _ptr(work)
        cdef int64_t *piw = <int64_t *>_ptr(iwork)
        cdef double *pdw = <double *>_ptr(dwork)
        cdef void *pm = _ptr(src_mask)
        cdef int64_t *pcount = <int64_t *>_ptr(count)
        cdef int64_t *pids = <int64_t *>_ptr(ids)
        cdef int64_t *plen = <int64_t *>_ptr(lengths)
        cdef int64_t *pend = <int64_t *>_ptr(ended)
        cdef double *psc = <double *>_ptr(scores)
        cdef double *plp = <double *>_ptr(logp)
        cdef int st
        self._busy = True
        try:
            if self.l32 != NULL:
                with nogil:
                    st = pt_beam_decode_f32(&g32, <float **>sk, <float **>sv, <float **>ck,
                                            <float **>cv, <float *>pm, B, c_S, c_cap, k, kind,
                                            alpha, pcount, pids, plen, pend, psc, plp,
                                            <float *>pw, piw, pdw)
            else:
                with nogil:
                    st = pt_beam_decode_f64(&g64, <double **>sk, <double **>sv, <double **>ck,
                                            <double **>cv, <double *>pm, B, c_S, c_cap, k,
                                            kind, alpha, pcount, pids, plen, pend, psc, plp,
                                            <double *>pw, piw, pdw)
        finally:
            if mine:
                self._busy = False
        self._bound = None                # the caches' rows have moved
        check_status(st)


def cache_gather(object dst, object src, object index, int64_t t):
    """dst[i, :, :t] = src[index[i], :, :t] for a decoder's key/value cache
    (B, H, capacity, d): beam search's reordering, copying only the t
    filled positions of each (row, head). dst (n, H, capacity, d) of src's
    dtype, both C-contiguous and apart in memory; index (n,) int64 rows of
    src; 0 <= t <= capacity. TypeError/ValueError name what is wrong."""
    if not isinstance(src, np.ndarray) or src.ndim != 4 or not src.flags.c_contiguous:
        raise TypeError("src: expected a C-contiguous 4-D numpy.ndarray (B, H, capacity, d)")
    cdef int64_t B = src.shape[0], H = src.shape[1], cap = src.shape[2], d = src.shape[3]
    idx = _check("index", index, np.int64, (len(index),))
    cdef int64_t n = idx.shape[0]
    _check("dst", dst, src.dtype, (n, H, cap, d), out=True)
    if not 0 <= t <= cap:
        raise ValueError(f"t: expected 0 <= t <= {cap}, got {t}")
    _apart("dst", dst, "src", src)
    check_status(pt_cache_gather(_ptr(dst), _ptr(src), <const int64_t *>_ptr(idx), n, B, H,
                                 cap, t, d, src.dtype.itemsize))
