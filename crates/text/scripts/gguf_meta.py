"""Minimal GGUF metadata reader (header and key/values only), for files whose tensor data is cut off."""
import struct, sys
def read_meta(path):
    f=open(path,'rb'); 
    assert f.read(4)==b'GGUF'
    ver,=struct.unpack('<I',f.read(4)); nt,nkv=struct.unpack('<QQ',f.read(16))
    def rs():
        n,=struct.unpack('<Q',f.read(8)); return f.read(n).decode('utf-8')
    fmt={0:'<B',1:'<b',2:'<H',3:'<h',4:'<I',5:'<i',6:'<f',7:'<?',10:'<Q',11:'<q',12:'<d'}
    def rv(t):
        if t==8: return rs()
        if t==9:
            et,=struct.unpack('<I',f.read(4)); n,=struct.unpack('<Q',f.read(8))
            return [rv(et) for _ in range(n)]
        s=struct.calcsize(fmt[t]); return struct.unpack(fmt[t],f.read(s))[0]
    out={}
    for _ in range(nkv):
        k=rs(); t,=struct.unpack('<I',f.read(4)); out[k]=rv(t)
    return out
if __name__=='__main__':
    m=read_meta(sys.argv[1])
    for k,v in m.items():
        if isinstance(v,list): print(k,'list',len(v))
        else: print(k,repr(v)[:3000])
