mod support;
use support::*;
#[test]
fn smoke() {
    let h = Refhyp::start("smoke", &[]);
    let mut g = Guest::connect(&h);
    let (st, ret) = g.call(FUNC_VERSION, [0; 6]);
    assert_eq!(st, ST_SUCCESS);
    assert_eq!(ret[0], 1 << 16);
    g.init();
    let mut d = blk::BlkDriver::connect(&h, &g);
    blk::BlkDriver::share_all(&mut g);
    g.write(blk::DATA_GPA, &[0x5a; 4096]);
    assert_eq!(d.request(&g, blk::T_OUT, 8, 4096), (blk::S_OK, 1));
    g.write(blk::DATA_GPA, &[0; 4096]);
    assert_eq!(d.request(&g, blk::T_IN, 8, 4096), (blk::S_OK, 4097));
    assert_eq!(g.read(blk::DATA_GPA, 4096), vec![0x5a; 4096]);
    let c = h.stop();
    eprintln!("{}", c.0);
}
