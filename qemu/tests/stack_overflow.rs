//! A stack that overflows faults; it does not overwrite the statics. The image links through
//! flip-link, which puts the stack at the RAM's start (`0x2000_0000`) below the statics, so the
//! first push past the stack's limit leaves RAM, into the 256 MiB the board's MPU guard forbids
//! (QEMU ignores writes there otherwise), and the core takes a HardFault. The test boots the product image, stops it through QEMU's
//! gdbstub at the entry of a function that begins by pushing two registers, moves the stack
//! pointer to the stack's limit (`_stack_end`, read from the ELF: no room left), and lets it run:
//! the push (or an interrupt's stacking) must fault, and the core end in HardFault (exception
//! number 3 in xPSR) escalated from a MemManage or BusFault below the RAM (CFSR, MMAR, BFAR,
//! HFSR.FORCED), its stack pointer still at the stack's limit. Without the MPU guard the pushes
//! vanish below the RAM and the function returns to garbage (INVSTATE: measured); without
//! flip-link `_stack_end` is not the RAM's start: either way the test fails. Linked without flip-link, `_stack_end` is the end of the statics
//! and the same pushes would land in them without any fault: the test would fail.

use std::time::Duration;

use homemx_qemu::firmware::{symbol_address, FirmwareBuild};
use homemx_qemu::gdb::{Session, PROGRAM_COUNTER, STACK_POINTER, XPSR};
use homemx_qemu::machine::{new_run_directory, Machine, MachineConfig};
use homemx_qemu::flash_image;

/// Where the mps2-an386's data SRAM starts (the `RAM` region of bsp/qemu-mps2/memory.x).
const RAM_START: u32 = 0x2000_0000;
/// The exception number of HardFault.
const HARD_FAULT: u32 = 3;
/// The Configurable Fault Status Register (ARMv7-M ARM, B3.2.15) and its bits: MemManage faults
/// (the MPU's stack guard, `bsp/qemu-mps2/src/stack_guard.rs`) of a data access (DACCVIOL, its
/// address in MMAR when MMARVALID) and of exception stacking (MSTKERR); the BusFaults of the same
/// (PRECISERR with BFAR, STKERR); and the faults a wild jump would cause instead.
const CFSR: u32 = 0xE000_ED28;
const IACCVIOL: u32 = 1 << 0;
const DACCVIOL: u32 = 1 << 1;
const MSTKERR: u32 = 1 << 4;
const MMARVALID: u32 = 1 << 7;
const PRECISERR: u32 = 1 << 9;
const STKERR: u32 = 1 << 12;
const BFARVALID: u32 = 1 << 15;
const UNDEFINSTR: u32 = 1 << 16;
const INVSTATE: u32 = 1 << 17;
/// The MemManage and BusFault Address Registers.
const MMAR: u32 = 0xE000_ED34;
const BFAR: u32 = 0xE000_ED38;
/// The HardFault Status Register, and its bit "a configurable fault was escalated to HardFault".
const HFSR: u32 = 0xE000_ED2C;
const FORCED: u32 = 1 << 30;

#[test]
fn a_stack_overflow_faults_below_the_ram_instead_of_overwriting_the_statics() {
    let elf = FirmwareBuild::QEMU.build().expect("firmware builds");
    let symbol = |name: &str| symbol_address(&elf, name).unwrap();
    let (stack_end, stack_start, statics) = (symbol("_stack_end"), symbol("_stack_start"), symbol("__sdata"));
    assert_eq!(stack_end, RAM_START, "the stack ends at the RAM's start (flip-link)");
    assert!(stack_start <= statics, "the stack lies below the statics: {stack_start:#x} > {statics:#x}");

    let directory = new_run_directory("stack-overflow").unwrap();
    let flash = directory.join("flash.img");
    flash_image::create(&flash).unwrap();
    let config = MachineConfig::offline(elf.clone(), flash, "52:54:00:6d:78:05");
    let mut machine = Machine::start(&config, &directory).expect("QEMU starts");
    machine.wait_ready(0, Duration::from_secs(60)).expect("boots");

    // At the entry of a function every task calls (`_embassy_time_now`, whose first instruction
    // pushes r7 and lr), with its return address still in lr: the stack has exactly no room left.
    let mut gdb = Session::attach(&machine.gdb_socket()).expect("gdbstub");
    gdb.run_to(symbol("_embassy_time_now") & !1, Duration::from_secs(10)).expect("the firmware reaches _embassy_time_now");
    let running_sp = gdb.read_register(STACK_POINTER).unwrap();
    assert!((stack_end..stack_start).contains(&running_sp), "the running stack pointer {running_sp:#x} is in the stack region");
    gdb.write_register(STACK_POINTER, stack_end).expect("move the stack pointer to the stack's limit");
    gdb.detach().unwrap();

    std::thread::sleep(Duration::from_secs(2));
    assert!(machine.is_running(), "QEMU still runs (a lockup would have ended it)");
    let mut gdb = Session::attach(&machine.gdb_socket()).expect("gdbstub again");
    let (xpsr, sp, pc) = (gdb.read_register(XPSR).unwrap(), gdb.read_register(STACK_POINTER).unwrap(), gdb.read_register(PROGRAM_COUNTER).unwrap());
    let (cfsr, hfsr) = (gdb.read_word(CFSR).unwrap(), gdb.read_word(HFSR).unwrap());
    let (memory_fault_address, bus_fault_address) = (gdb.read_word(MMAR).unwrap(), gdb.read_word(BFAR).unwrap());
    gdb.detach().unwrap();
    eprintln!(
        "after the overflow: xPSR {xpsr:#x} (exception {}), SP {sp:#x}, PC {pc:#x}, CFSR {cfsr:#010x}, HFSR {hfsr:#010x}",
        xpsr & 0x1ff
    );
    assert_eq!(xpsr & 0x1ff, HARD_FAULT, "the overflowing push faulted (HardFault); xPSR {xpsr:#x}");
    assert!(
        cfsr & (DACCVIOL | MSTKERR | PRECISERR | STKERR) != 0,
        "the fault is the guard's (MemManage) or the bus's on the push or the exception's stacking: CFSR {cfsr:#010x}"
    );
    assert!(cfsr & (IACCVIOL | UNDEFINSTR | INVSTATE) == 0, "and no wild jump came first: CFSR {cfsr:#010x}");
    for (valid, address, name) in [(MMARVALID, memory_fault_address, "MMAR"), (BFARVALID, bus_fault_address, "BFAR")] {
        assert!(cfsr & valid == 0 || address < RAM_START, "the faulting access ({name} {address:#x}) was below the RAM's start");
    }
    assert!(hfsr & FORCED != 0, "escalated to HardFault (HFSR.FORCED): HFSR {hfsr:#010x}");
    assert!(sp <= stack_end && sp + 0x100 > stack_end, "the stack pointer stopped at the stack's limit, not in the statics: SP {sp:#x}");
    machine.kill();
}
