//! A hand-driven (bit-banged) I²C master: for boards whose I²C controller is two lines the
//! software toggles (the SBCon of QEMU's mps2 boards). Only what the boards need: reading one
//! register of a device ([`read_register`]), 7-bit addresses, no clock stretching (the
//! emulated devices answer at once).
//!
//! Owns: nothing (the caller's [`Lines`]). Calls: nothing.

/// The two lines of an I²C bus driven by hand (open drain: "high" releases the line).
pub trait Lines {
    /// Releases (true) or pulls low (false) the clock.
    fn set_clock(&mut self, high: bool);
    /// Releases (true) or pulls low (false) the data line.
    fn set_data(&mut self, high: bool);
    /// The data line's level on the wire.
    fn data(&mut self) -> bool;
}

fn start(lines: &mut impl Lines) {
    // Both released, then data falls while the clock is high (also a repeated start).
    lines.set_data(true);
    lines.set_clock(true);
    lines.set_data(false);
    lines.set_clock(false);
}

fn stop(lines: &mut impl Lines) {
    lines.set_data(false);
    lines.set_clock(true);
    lines.set_data(true);
}

fn write_bit(lines: &mut impl Lines, bit: bool) {
    lines.set_data(bit);
    lines.set_clock(true);
    lines.set_clock(false);
}

fn read_bit(lines: &mut impl Lines) -> bool {
    lines.set_data(true);
    lines.set_clock(true);
    let bit = lines.data();
    lines.set_clock(false);
    bit
}

/// Sends `byte`, most significant bit first; true if the device acknowledged it.
fn write_byte(lines: &mut impl Lines, byte: u8) -> bool {
    for shift in (0..8).rev() {
        write_bit(lines, byte >> shift & 1 != 0);
    }
    !read_bit(lines)
}

/// Receives one byte and answers "no more" (not acknowledged).
fn read_last_byte(lines: &mut impl Lines) -> u8 {
    let mut byte = 0;
    for _ in 0..8 {
        byte = byte << 1 | u8::from(read_bit(lines));
    }
    write_bit(lines, true);
    byte
}

/// Reads register `register` of the device at `address`: START, address + write, register,
/// repeated START, address + read, one byte, NACK, STOP. `None` if the device did not
/// acknowledge.
pub fn read_register(lines: &mut impl Lines, address: u8, register: u8) -> Option<u8> {
    start(lines);
    let answered = write_byte(lines, address << 1) && write_byte(lines, register) && {
        start(lines);
        write_byte(lines, address << 1 | 1)
    };
    let value = answered.then(|| read_last_byte(lines));
    stop(lines);
    value
}

#[cfg(test)]
mod tests {
    extern crate std;

    use std::vec::Vec;

    use super::*;

    /// What the device saw on the bus.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    enum Event {
        Start,
        Stop,
        /// A byte the master wrote, and whether the device acknowledged it.
        Written(u8, bool),
        /// A byte the device sent, and whether the master acknowledged it.
        Sent(u8, bool),
    }

    /// A register device on a simulated open-drain bus, decoding the master's line changes as an
    /// I²C slave does: START and STOP are data edges while the clock is high, bits are sampled
    /// on the clock's rising edge, and the device changes its own output only while the clock is
    /// low (the acknowledge in the ninth clock, the bits it sends).
    struct Device {
        address: u8,
        registers: [u8; 4],
        clock: bool,
        master_data: bool,
        device_data: bool,
        /// Inside a transaction (after START, until STOP or a NACK to the address).
        active: bool,
        /// No byte has completed since START: the next one is the address.
        expect_address: bool,
        /// The device sends the current byte (a read, after the address's acknowledge).
        sending: bool,
        /// The address asked for a read: the device sends from the next byte on.
        read_requested: bool,
        /// Bit position in the current byte; 8 is the acknowledge slot.
        index: u8,
        /// START seen, its own falling clock edge not yet (it starts no bit).
        after_start: bool,
        shift: u8,
        pointer: u8,
        events: Vec<Event>,
    }

    impl Device {
        fn at(address: u8, registers: [u8; 4]) -> Device {
            Device {
                address,
                registers,
                clock: true,
                master_data: true,
                device_data: true,
                active: false,
                expect_address: false,
                sending: false,
                read_requested: false,
                index: 0,
                after_start: false,
                shift: 0,
                pointer: 0,
                events: Vec::new(),
            }
        }

        fn wire(&self) -> bool {
            self.master_data && self.device_data
        }

        fn clock_rises(&mut self) {
            if !self.active {
                return;
            }
            if self.index < 8 && !self.sending {
                self.shift = self.shift << 1 | u8::from(self.master_data);
            } else if self.index == 8 && self.sending {
                let acknowledged = !self.master_data;
                self.events.push(Event::Sent(self.shift, acknowledged));
                if !acknowledged {
                    self.active = false;
                }
            }
        }

        fn clock_falls(&mut self) {
            if !self.active {
                self.device_data = true;
                return;
            }
            if self.after_start {
                self.after_start = false;
                return;
            }
            if self.index < 7 {
                self.index += 1;
                if self.sending {
                    self.device_data = self.shift >> (7 - self.index) & 1 != 0;
                }
            } else if self.index == 7 {
                self.index = 8;
                if self.sending {
                    self.device_data = true;
                } else {
                    let byte = self.shift;
                    let acknowledged = if self.expect_address { byte >> 1 == self.address } else { true };
                    self.events.push(Event::Written(byte, acknowledged));
                    if self.expect_address {
                        self.expect_address = false;
                        self.read_requested = byte & 1 != 0;
                    } else {
                        self.pointer = byte;
                    }
                    self.device_data = !acknowledged;
                    if !acknowledged {
                        self.active = false;
                    }
                }
            } else {
                self.index = 0;
                self.shift = 0;
                self.device_data = true;
                self.sending |= core::mem::take(&mut self.read_requested);
                if self.sending {
                    self.shift = self.registers[usize::from(self.pointer) % self.registers.len()];
                    self.pointer = self.pointer.wrapping_add(1);
                    self.device_data = self.shift & 0x80 != 0;
                }
            }
        }
    }

    impl Lines for Device {
        fn set_clock(&mut self, high: bool) {
            if high == self.clock {
                return;
            }
            self.clock = high;
            if high {
                self.clock_rises();
            } else {
                self.clock_falls();
            }
        }

        fn set_data(&mut self, high: bool) {
            if high == self.master_data {
                return;
            }
            self.master_data = high;
            if self.clock && !high {
                self.events.push(Event::Start);
                self.active = true;
                self.expect_address = true;
                self.after_start = true;
                self.sending = false;
                self.read_requested = false;
                self.index = 0;
                self.shift = 0;
                self.device_data = true;
            } else if self.clock && high {
                self.events.push(Event::Stop);
                self.active = false;
                self.device_data = true;
            }
        }

        fn data(&mut self) -> bool {
            self.wire()
        }
    }

    #[test]
    fn a_register_read_is_write_pointer_repeated_start_read_one_byte_nack_stop() {
        for value in [0x00, 0x01, 0xfe, 0xa5, 0xff] {
            let mut device = Device::at(0x60, [value, 0x11, 0x22, 0x33]);
            assert_eq!(read_register(&mut device, 0x60, 0x00), Some(value));
            assert_eq!(
                device.events,
                [
                    Event::Start,
                    Event::Written(0xc0, true),
                    Event::Written(0x00, true),
                    Event::Start,
                    Event::Written(0xc1, true),
                    Event::Sent(value, false),
                    Event::Stop
                ]
            );
            assert!(device.clock && device.wire(), "the bus is released at the end");
        }
        let mut device = Device::at(0x60, [0, 0x11, 0x22, 0x33]);
        assert_eq!(read_register(&mut device, 0x60, 0x02), Some(0x22), "the pointer selects the register");
    }

    #[test]
    fn no_device_at_the_address_reads_none_and_releases_the_bus() {
        let mut device = Device::at(0x61, [1, 2, 3, 4]);
        assert_eq!(read_register(&mut device, 0x60, 0x00), None);
        assert_eq!(device.events, [Event::Start, Event::Written(0xc0, false), Event::Stop]);
        assert!(device.clock && device.wire());
        // The next read, to the right device, still works.
        let mut device = Device::at(0x60, [7, 0, 0, 0]);
        assert_eq!(read_register(&mut device, 0x60, 0x00), Some(7));
    }
}
